"""Pictures: training curves of runs, a checkpoint's confusion matrix and mistakes, and a search's study.

matplotlib is an optional extra (`pip install "seqclf[plot]"`), imported only here and only
when a picture is asked for. Figures are drawn with matplotlib's object API (no pyplot, no
global state, no display needed) and written atomically like every other file.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from seqclf.errors import SeqclfError
from seqclf.store.files import output_file
from seqclf.store.naming import STAMP
from seqclf.store.rundir import RunDir

FORMATS = (".png", ".svg", ".pdf")


def new_figure(**kwargs: Any) -> Any:
    """A matplotlib Figure, or a SeqclfError saying how to install matplotlib."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise SeqclfError('plotting needs matplotlib, an optional extra: pip install "seqclf[plot]" '
                          '(or pip install matplotlib)') from None
    return Figure(layout="constrained", **kwargs)


def check_output(path: Path, formats: tuple[str, ...] = FORMATS, example: str = "curves.png") -> None:
    """Refuse an output (a picture, or `seqclf report`'s page) that cannot be written, before anything
    is drawn or scored."""
    if path.is_dir():
        raise SeqclfError(f"-o {path}: is a folder; give a file name, e.g. -o {path / example}")
    if path.suffix.lower() not in formats:
        raise SeqclfError(f"-o {path}: the file name must end in {', '.join(formats)}")
    output_file(path, "-o")  # /dev/full, a FIFO: refused; a symbolic link is written through
    folder = next((p for p in path.absolute().parents if p.exists()), Path("/"))
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise SeqclfError(f"-o {path}: {folder} cannot be written; choose another path with -o")


def save_figure(figure: Any, path: Path) -> Path:
    from seqclf.errors import TrainingError
    from seqclf.store.files import atomic_write

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda handle: figure.savefig(handle, format=path.suffix.lower()[1:], dpi=100))
    except (OSError, TrainingError) as exc:  # atomic_write's own message speaks of output.dir
        raise SeqclfError(f"-o {path}: cannot be written ({getattr(exc, 'strerror', None) or exc}); "
                          f"choose another path with -o") from None
    return path


def short_labels(paths: list[Path]) -> list[str]:
    """Run names without their time stamps, where that keeps them apart."""
    names = [path.name for path in paths]
    short = [STAMP.sub("", name) for name in names]
    return short if len(set(short)) == len(short) else names


def whole_number_ticks(axis: Any) -> None:
    """Epochs and trials are whole numbers: ticks on integers only, and one tick for a single point
    (matplotlib's own ticks around one epoch read 0.96, 0.98, 1.00...)."""
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))


def points(history: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """(epochs, values) of one metric: rows without a finite number for it (an edited file) are left out."""
    kept = [(row["epoch"], row[key]) for row in history if isinstance(row.get(key), (int, float))
            and not isinstance(row.get(key), bool) and math.isfinite(row[key])]
    return [epoch for epoch, _ in kept], [value for _, value in kept]


def plot_curves(paths: list[Path], output: Path) -> tuple[Path, list[Path]]:
    """Loss and accuracy per epoch (train dashed, validation solid), one colour per run.

    `paths` may be run directories or folders of runs. Returns the file written and the runs
    left out because they have no finished epoch yet.
    """
    check_output(output)
    figure = new_figure(figsize=(10, 3.8))
    run_dirs = [run_dir for path in paths for run_dir in RunDir.find(path)]
    if not run_dirs:
        raise SeqclfError(f"no run directories in {', '.join(map(str, paths))} (a run holds config.yaml)")
    histories = [(run_dir.path, run_dir.read_metrics()) for run_dir in run_dirs]
    drawn = [(path, history) for path, history in histories if history]
    skipped = [path for path, history in histories if not history]
    if not drawn:
        raise SeqclfError(f"nothing to draw: none of {', '.join(map(str, run_dirs))} has finished an epoch")
    loss_axes, accuracy_axes = figure.subplots(1, 2)
    for i, (label, (_, history)) in enumerate(zip(short_labels([p for p, _ in drawn]), drawn)):
        color = f"C{i % 10}"
        for axes, metric in ((loss_axes, "loss"), (accuracy_axes, "accuracy")):
            axes.plot(*points(history, f"train_{metric}"), "--", color=color, alpha=0.8)
            axes.plot(*points(history, f"val_{metric}"), "-o", color=color, markersize=3, label=label)
    for axes, metric in ((loss_axes, "loss"), (accuracy_axes, "accuracy")):
        axes.set_xlabel("epoch")
        axes.set_ylabel(metric)
        whole_number_ticks(axes.xaxis)
        axes.grid(alpha=0.3)
    loss_axes.set_title("loss (dashed: train, solid: validation)")
    accuracy_axes.set_title("accuracy (dashed: train, solid: validation)")
    accuracy_axes.legend(fontsize="small")
    return save_figure(figure, output), skipped


def plot_confusion(checkpoint_path: Path, output: Path, overrides: list[str] | tuple[str, ...] = (),
                   split: str = "test") -> tuple[Path, dict[str, Any]]:
    """The confusion matrix of a checkpoint on its data (rows: true class, columns: predicted).

    Cells are coloured by the fraction of the true class and labelled with counts. Returns the file
    written and the evaluation result (what `seqclf eval --json` prints).
    """
    from seqclf.use.evaluate import evaluate_checkpoint

    check_output(output)
    figure = new_figure(figsize=(6.4, 5.6))
    result = evaluate_checkpoint(checkpoint_path, overrides, split)
    matrix = result["confusion_matrix"]  # (C, C) counts
    n = len(matrix)
    classes = result["class_names"]
    rates = [[count / max(sum(row), 1) for count in row] for row in matrix]
    axes = figure.subplots()
    image = axes.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
    for true in range(n):
        for predicted in range(n):
            axes.text(predicted, true, str(matrix[true][predicted]), ha="center", va="center", fontsize=7,
                      color="white" if rates[true][predicted] > 0.6 else "black")
    named = classes != [str(k) for k in range(n)]
    axes.set_xticks(range(n), classes, rotation=45 if named else 0, ha="right" if named else "center", fontsize=8)
    axes.set_yticks(range(n), classes, fontsize=8)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title(f"{Path(checkpoint_path).parent.name}: {split} accuracy {result['accuracy']:.4f}", fontsize=9)
    figure.colorbar(image, ax=axes, label="fraction of the true class")
    return save_figure(figure, output), result


def find_mistakes(checkpoint_path: Path, n: int = 16, split: str = "test",
                  overrides: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """The n most confident wrong predictions on a split: {"images" (n, H, W) uint8, "true", "predicted",
    "probability" (lists), "class_names", "errors" (wrong predictions in the split), "total"}."""
    import numpy as np
    import torch

    from seqclf.config import parse_overrides
    from seqclf.data.datasets import split_images
    from seqclf.model.classifier import SequenceClassifier, load_weights
    from seqclf.store import checkpoint
    from seqclf.training.devices import configure, configure_threads, resolve_device
    from seqclf.use.evaluate import eval_config
    from seqclf.use.predict import Predictor

    if split not in ("test", "val"):
        raise SeqclfError(f"--split {split!r}: choose test or val")
    if n < 1:
        raise SeqclfError(f"-n {n}: give how many mistakes to show (1 or more)")
    saved = checkpoint.read(checkpoint_path)
    cfg = eval_config(saved.config, overrides, checkpoint_path)  # eval's --set: where the data is, how to compute
    try:
        device = resolve_device(cfg.train.device)
    except SeqclfError:
        if "train.device" in {key for key, _ in parse_overrides(overrides)}:
            raise
        device = torch.device("cpu")  # trained on a GPU this machine lacks: as Predictor.from_checkpoint
    configure(cfg.train)  # train.tf32, as eval sets it
    configure_threads(cfg.train.num_threads)
    model = SequenceClassifier(cfg.model, saved.data.input_size, saved.data.num_classes).to(device)  # model.impl
    load_weights(model, saved.model, str(checkpoint_path))
    predictor = Predictor(model, cfg, saved.data, device, str(checkpoint_path))  # computes in cfg.train.precision
    images, labels = split_images(cfg.data, cfg.seed, split)
    probabilities = predictor.probabilities(images)  # (N, C)
    predicted, confidence = probabilities.argmax(1), probabilities.max(1)
    wrong = np.flatnonzero(predicted != labels.numpy())
    chosen = wrong[np.argsort(-confidence[wrong], kind="stable")][:n]  # most confident first
    return {"images": images.numpy()[chosen], "true": labels.numpy()[chosen].tolist(),
            "predicted": predicted[chosen].tolist(), "probability": confidence[chosen].tolist(),
            "class_names": predictor.class_names, "errors": len(wrong), "total": len(labels)}


def plot_mistakes(checkpoint_path: Path, output: Path, n: int = 16, split: str = "test",
                  overrides: list[str] | tuple[str, ...] = ()) -> tuple[Path, dict[str, Any]]:
    """A grid of the n most confident wrong predictions, each titled true / predicted (probability)."""
    check_output(output)
    found = find_mistakes(checkpoint_path, n, split, overrides)
    shown = len(found["true"])
    columns = min(shown, 8) or 1
    rows = max(1, -(-shown // columns))
    figure = new_figure(figsize=(1.5 * columns, 1.7 * rows + 0.4))
    names = found["class_names"]
    for i, axes in enumerate(figure.subplots(rows, columns, squeeze=False).flat):
        axes.set_axis_off()
        if i < shown:
            axes.imshow(found["images"][i], cmap="gray", vmin=0, vmax=255)
            axes.set_title(f"true {names[found['true'][i]]}\npred {names[found['predicted'][i]]} "
                           f"{found['probability'][i]:.2f}", fontsize=7)
    figure.suptitle(f"{Path(checkpoint_path).parent.name}: {found['errors']} of {found['total']} {split} examples "
                    f"wrong; {shown} most confident shown" if shown else f"no mistakes on the {split} split",
                    fontsize=9)
    return save_figure(figure, output), found


def plot_study(info: dict[str, Any], output: Path) -> Path:
    """A study (what `seqclf tune --show --json` prints) and the parameter importances: with one
    objective, the value of every trial with the best so far (pruned trials at their last reported
    value); with several, the Pareto front of the first two."""
    from seqclf.search.study import importance_caveat, label

    check_output(output)
    figure = new_figure(figsize=(10, 3.8))
    history_axes, importance_axes = figure.subplots(1, 2, width_ratios=(3, 2))
    scored = [t for t in info["trials"] if t["values"] is not None]
    if not scored:
        raise SeqclfError(f"nothing to draw: study {info['study']} has no trial with a value yet")
    names = info["objectives"]
    if len(names) == 1:
        _draw_history(history_axes, info, scored)
    else:
        _draw_front(history_axes, info, scored)
    importances = info["importances"] or {}
    if len(names) > 1:  # one mapping per objective: the first objective's bars
        importances = importances.get(names[0]) or {}
    keys = list(importances)[::-1]  # the most important on top
    importance_axes.barh(keys, [importances[key] for key in keys], color="C0")
    importance_axes.set_xlabel("importance (Optuna's evaluator; sums to 1)")
    importance_axes.set_title((f"importances for {label(names[0])}" if len(names) > 1 else "parameter importances")
                              + importance_caveat(info["complete"]) if keys else "importances: too few complete trials")
    importance_axes.tick_params(axis="y", labelsize=8)
    return save_figure(figure, output)


def _draw_history(axes: Any, info: dict[str, Any], scored: list[dict[str, Any]]) -> None:
    from seqclf.search.study import OBJECTIVES, label

    name = info["objectives"][0]
    better = min if OBJECTIVES.get(name, ("maximize",))[0] == "minimize" else max
    for state, marker, color in (("complete", "o", "C0"), ("pruned", "x", "C3")):
        chosen = [t for t in scored if t["state"] == state]
        axes.plot([t["number"] for t in chosen], [t["value"] for t in chosen], marker, color=color,
                  linestyle="none", label=state)
    best, steps = None, []
    for trial in (t for t in scored if t["state"] == "complete"):
        best = trial["value"] if best is None else better(best, trial["value"])
        steps.append((trial["number"], best))
    if steps:  # drawn on to the last trial
        steps.append((max(t["number"] for t in scored), best))
        axes.step(*zip(*steps), where="post", color="C2", label="best so far")
    axes.set_xlabel("trial")
    whole_number_ticks(axes.xaxis)  # trials are numbered 0, 1, 2...: no 0.5
    axes.set_ylabel(f"{label(name)} (best; pruned: last)" if name == "accuracy" else label(name))
    axes.set_title(f"study {info['study']}: {info['complete']} complete, {info['pruned']} pruned")
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")


def _draw_front(axes: Any, info: dict[str, Any], scored: list[dict[str, Any]]) -> None:
    """Every complete trial of the first two objectives, the Pareto front joined and numbered."""
    from seqclf.search.study import label

    x_name, y_name = info["objectives"][:2]
    complete = [t for t in scored if t["state"] == "complete"]
    axes.plot([t["values"][x_name] for t in complete], [t["values"][y_name] for t in complete], "o", color="C0",
              alpha=0.5, linestyle="none", label="complete")
    front = sorted(info["front"], key=lambda t: t["values"][x_name])
    axes.plot([t["values"][x_name] for t in front], [t["values"][y_name] for t in front], "-o", color="C3",
              label="Pareto front")
    for trial in front:
        axes.annotate(str(trial["trial"]), (trial["values"][x_name], trial["values"][y_name]), fontsize=7,
                      textcoords="offset points", xytext=(3, 3))
    axes.set_xlabel(label(x_name))
    axes.set_ylabel(label(y_name))
    more = f" (of {len(info['objectives'])} objectives)" if len(info["objectives"]) > 2 else ""
    axes.set_title(f"study {info['study']}: {info['complete']} complete, {len(front)} on the front{more}")
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")


def draw_study(study: str, storage: str | None, overrides: list[str], output: Path) -> Path:
    """`seqclf plot --study`: a study's history and importances (its default storage under output.dir from --set)."""
    from seqclf.config import load_config
    from seqclf.search.study import study_info

    return plot_study(study_info(study, storage, load_config(None, overrides)), output)
