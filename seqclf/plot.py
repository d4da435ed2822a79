"""Pictures: training curves of runs, and the confusion matrix of a checkpoint.

matplotlib is an optional extra (`pip install "seqclf[plot]"`), imported only here and only
when a picture is asked for. Figures are drawn with matplotlib's object API (no pyplot, no
global state, no display needed) and written atomically like every other file.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from seqclf import runs
from seqclf.errors import SeqclfError

FORMATS = (".png", ".svg", ".pdf")
_TIME = re.compile(r"-\d{8}-\d{6}(-\d+)?$")  # the time stamp (and -N suffix) ending a generated run name


def _figure(**kwargs: Any) -> Any:
    """A matplotlib Figure, or a SeqclfError saying how to install matplotlib."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise SeqclfError('plotting needs matplotlib, an optional extra: pip install "seqclf[plot]" '
                          '(or pip install matplotlib)') from None
    return Figure(layout="constrained", **kwargs)


def _check_output(path: Path) -> None:
    if path.suffix.lower() not in FORMATS:
        raise SeqclfError(f"-o {path}: the file name must end in {', '.join(FORMATS)}")


def _save(figure: Any, path: Path) -> Path:
    from seqclf.files import atomic_write

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda handle: figure.savefig(handle, format=path.suffix.lower()[1:], dpi=100))
    except OSError as exc:
        raise SeqclfError(f"-o {path}: cannot be written ({exc.strerror or exc})") from None
    return path


def _labels(paths: list[Path]) -> list[str]:
    """Run names without their time stamps, where that keeps them apart."""
    names = [path.name for path in paths]
    short = [_TIME.sub("", name) for name in names]
    return short if len(set(short)) == len(short) else names


def plot_curves(paths: list[Path], output: Path) -> tuple[Path, list[Path]]:
    """Loss and accuracy per epoch (train dashed, validation solid), one colour per run.

    `paths` may be run directories or folders of runs. Returns the file written and the runs
    left out because they have no finished epoch yet.
    """
    _check_output(output)
    figure = _figure(figsize=(10, 3.8))
    run_dirs = [run for path in paths for run in runs.find_runs(path)]
    if not run_dirs:
        raise SeqclfError(f"no run directories in {', '.join(map(str, paths))} (a run holds config.yaml)")
    histories = [(path, runs.read_metrics(path)) for path in run_dirs]
    drawn = [(path, history) for path, history in histories if history]
    skipped = [path for path, history in histories if not history]
    if not drawn:
        raise SeqclfError(f"nothing to draw: none of {', '.join(map(str, run_dirs))} has finished an epoch")
    loss_axes, accuracy_axes = figure.subplots(1, 2)
    for i, (label, (_, history)) in enumerate(zip(_labels([p for p, _ in drawn]), drawn)):
        epochs = [row["epoch"] for row in history]
        color = f"C{i % 10}"
        for axes, metric in ((loss_axes, "loss"), (accuracy_axes, "accuracy")):
            axes.plot(epochs, [row[f"train_{metric}"] for row in history], "--", color=color, alpha=0.8)
            axes.plot(epochs, [row[f"val_{metric}"] for row in history], "-o", color=color, markersize=3,
                      label=label)
    for axes, metric in ((loss_axes, "loss"), (accuracy_axes, "accuracy")):
        axes.set_xlabel("epoch")
        axes.set_ylabel(metric)
        axes.xaxis.get_major_locator().set_params(integer=True)
        axes.grid(alpha=0.3)
    loss_axes.set_title("loss (dashed: train, solid: validation)")
    accuracy_axes.set_title("accuracy (dashed: train, solid: validation)")
    accuracy_axes.legend(fontsize="small")
    return _save(figure, output), skipped


def plot_confusion(checkpoint_path: Path, output: Path, overrides: list[str] | tuple[str, ...] = (),
                   split: str = "test") -> tuple[Path, dict[str, Any]]:
    """The confusion matrix of a checkpoint on its data (rows: true class, columns: predicted).

    Cells are coloured by the fraction of the true class and labelled with counts. Returns the file
    written and the evaluation result (what `seqclf eval --json` prints).
    """
    from seqclf.evaluate import evaluate_checkpoint

    _check_output(output)
    figure = _figure(figsize=(6.4, 5.6))
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
    return _save(figure, output), result
