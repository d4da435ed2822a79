"""Pictures of what a model does as it reads: traces, accuracy by steps read, reliability, and the four
training curves (loss, accuracy, learning rate, gradient norm) of `seqclf report`.

Drawn like seqclf.use.plot's (matplotlib's object API, imported only when a picture is asked for);
`png_data_uri` turns a figure into the inline image a self-contained HTML page holds.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import numpy as np

from seqclf.use.plot import check_output, new_figure, points, save_figure, whole_number_ticks

TRACE_PICTURES = 8  # inputs drawn by `seqclf trace -o`: one row each
CURVES = (("loss", "loss"), ("accuracy", "accuracy"), ("lr", "learning rate"), ("grad_norm", "gradient norm"))


def png_data_uri(figure: Any, dpi: int = 80) -> str:
    """A figure as `data:image/png;base64,...`: an image with no file and no network behind it."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def image_data_uri(image: np.ndarray, scale: int = 2) -> str:
    """An (H, W) uint8 grey image as a PNG data URI, each pixel `scale` x `scale` (no matplotlib figure)."""
    from matplotlib.image import imsave

    buffer = io.BytesIO()
    imsave(buffer, np.kron(np.asarray(image), np.ones((scale, scale), np.uint8)), cmap="gray", vmin=0, vmax=255,
           format="png")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def draw_trace_row(image_axes: Any, curve_axes: Any, image: np.ndarray, trace: dict[str, Any],
                   class_names: list[str], step: str, true_class: str | None = None) -> None:
    """One input: the image, and each class's probability after every step (the three final leaders named)."""
    image_axes.imshow(image, cmap="gray", vmin=0, vmax=255)
    image_axes.set_axis_off()
    mark = {"row": image_axes.axhline, "column": image_axes.axvline}.get(step)
    if mark is not None:  # where the final class took the lead
        mark(trace["decided_at"] - 0.5, color="C1", linewidth=1.2, linestyle=":")
    title = f"{trace['predicted_class']} {trace['probability']:.2f}"
    image_axes.set_title(title if true_class is None else f"true {true_class}\n{title}", fontsize=8)
    probabilities = np.asarray(trace["probabilities"])  # (T, C)
    steps = np.arange(1, len(probabilities) + 1)
    leaders = list(np.argsort(-probabilities[-1])[:3])
    for label in range(probabilities.shape[1]):
        if label not in leaders:
            curve_axes.plot(steps, probabilities[:, label], color="0.8", linewidth=0.8)
    for rank, label in enumerate(leaders):
        curve_axes.plot(steps, probabilities[:, label], color=f"C{rank}", linewidth=1.6, label=class_names[label])
    curve_axes.axvline(trace["decided_at"], color="0.5", linestyle=":", linewidth=1)
    curve_axes.set_ylim(-0.02, 1.02)
    curve_axes.set_xlim(1, max(len(probabilities), 2))
    curve_axes.set_ylabel("probability", fontsize=8)
    curve_axes.set_xlabel(f"{step}s read (dotted: the final class leads from here)", fontsize=8)
    curve_axes.tick_params(labelsize=7)
    curve_axes.grid(alpha=0.3)
    curve_axes.legend(fontsize=7, loc="center left")


def draw_traces(traces: list[dict[str, Any]], images: np.ndarray, class_names: list[str], step: str,
                true_classes: list[str] | None = None, columns: int = 1) -> Any:
    """A figure of traces: per input, its image beside its probability curves; `columns` inputs a row."""
    shown = len(traces)
    rows = max(1, -(-shown // columns))
    figure = new_figure(figsize=(5.2 * columns, 2.1 * rows))
    grid = figure.subplots(rows, 2 * columns, squeeze=False, width_ratios=[1, 4] * columns)
    for i in range(rows * columns):
        image_axes, curve_axes = grid[i // columns][2 * (i % columns)], grid[i // columns][2 * (i % columns) + 1]
        if i >= shown:
            image_axes.set_axis_off()
            curve_axes.set_axis_off()
            continue
        draw_trace_row(image_axes, curve_axes, images[i], traces[i], class_names, step,
                       true_classes[i] if true_classes else None)
    return figure


def plot_trace(result: dict[str, Any], images: np.ndarray, output: Path) -> tuple[Path, int]:
    """`seqclf trace -o`: the first TRACE_PICTURES traces of a trace_files result; (file, inputs drawn)."""
    from seqclf.errors import SeqclfError

    check_output(output)
    traces = result["traces"][:TRACE_PICTURES]
    if not traces:
        raise SeqclfError(f"-o {output}: nothing to draw, no input could be read")
    figure = draw_traces(traces, images, result["class_names"], result["step"])
    figure.suptitle(f"{Path(result['checkpoint']).parent.name}\nclass probabilities after each {result['step']} "
                    f"read ({result['method']})", fontsize=9)
    return save_figure(figure, output), len(traces)


def draw_accuracy_by_step(series: list[tuple[str, list[float]]], step: str, legend: bool = False) -> Any:
    """Accuracy had reading stopped after k steps, one line per model; a legend with several lines, or when
    asked (a comparison whose runs read this way is one run of several)."""
    figure = new_figure(figsize=(6.4, 3.4))
    axes = figure.subplots()
    for i, (label, accuracy) in enumerate(series):
        axes.plot(range(1, len(accuracy) + 1), accuracy, "-", marker="o" if len(accuracy) <= 64 else None,
                  markersize=3, color=f"C{i % 10}", label=label)
    axes.set_xlabel(f"{step}s read")
    axes.set_ylabel("accuracy")
    axes.set_ylim(0, 1.02)
    axes.grid(alpha=0.3)
    axes.set_title(f"accuracy if reading stopped after k {step}s")
    if legend or len(series) > 1:
        axes.legend(fontsize="small")
    return figure


def draw_reliability(calibration: dict[str, Any]) -> Any:
    """The reliability diagram: accuracy per confidence bin against the diagonal, and how many fall in each."""
    figure = new_figure(figsize=(4.6, 4.2))
    axes = figure.subplots()
    bins = calibration["bins"]
    centres = [(b["lower"] + b["upper"]) / 2 for b in bins]
    width = bins[0]["upper"] - bins[0]["lower"]
    filled = [b for b in bins if b["n"]]
    axes.bar([(b["lower"] + b["upper"]) / 2 for b in filled], [b["accuracy"] for b in filled], width=width * 0.95,
             color="C0", label="accuracy")
    axes.bar([(b["lower"] + b["upper"]) / 2 for b in filled],  # from accuracy to mean confidence, either way
             [abs(b["confidence"] - b["accuracy"]) for b in filled],
             bottom=[min(b["confidence"], b["accuracy"]) for b in filled], width=width * 0.95, color="none",
             edgecolor="C3", hatch="////", linewidth=0.8, label="gap to mean confidence")
    axes.plot([0, 1], [0, 1], "--", color="0.4", linewidth=1)
    total = max(sum(b["n"] for b in bins), 1)
    for centre, b in zip(centres, bins):
        if b["n"]:
            axes.text(centre, 0.02, f"{b['n'] / total:.0%}", rotation=90, fontsize=6, ha="center", va="bottom")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.set_xlabel("confidence (top class probability)")
    axes.set_ylabel("accuracy")
    ece = calibration["ece"]
    axes.set_title(f"reliability: ECE {ece:.4f} ({len(bins)} bins)" if ece is not None else "reliability")
    axes.legend(fontsize="small", loc="upper left")
    return figure


def draw_curves(histories: list[tuple[str, list[dict[str, Any]]]]) -> Any:
    """Loss, accuracy, learning rate and gradient norm per epoch (train dashed, validation solid), runs overlaid."""
    figure = new_figure(figsize=(10, 6.4))
    grid = list(figure.subplots(2, 2).flat)
    for i, (label, history) in enumerate(histories):
        color = f"C{i % 10}"
        for axes, (key, _) in zip(grid, CURVES):
            if key in ("loss", "accuracy"):
                axes.plot(*points(history, f"train_{key}"), "--", color=color, alpha=0.8)
                axes.plot(*points(history, f"val_{key}"), "-o", color=color, markersize=3, label=label)
            else:
                axes.plot(*points(history, key), "-o", color=color, markersize=3, label=label)
    for axes, (key, title) in zip(grid, CURVES):
        axes.set_xlabel("epoch")
        axes.set_title(title + (" (dashed: train, solid: validation)" if key in ("loss", "accuracy") else ""),
                       fontsize=9)
        whole_number_ticks(axes.xaxis)
        axes.grid(alpha=0.3)
        if key == "lr":
            axes.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    if len(histories) > 1:
        grid[1].legend(fontsize="small")
    return figure
