"""Commands that use what training produced: pictures of runs and checkpoints, predict, export.

A command group that seqclf.cli.app adds to the root; thin like every command: parse, call one
library function, render through console.py.
"""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path
from typing import List, Optional

import typer

from seqclf.cli import options
from seqclf.cli.common import emit_json, reported, sub_app
from seqclf.cli.examples import examples
from seqclf.console import Output
from seqclf.errors import SeqclfError

use_app = sub_app("Use a trained model: plot, predict, export.")


@use_app.command(epilog=examples("plot"))
def plot(
    run_dirs: Optional[List[Path]] = typer.Argument(None, metavar="RUN_DIR",
                                                    help="Runs to overlay (or folders of runs)."),
    confusion: Optional[Path] = typer.Option(None, "--confusion", metavar="CHECKPOINT",
                                             help="Draw this checkpoint's confusion matrix instead."),
    mistakes: Optional[Path] = typer.Option(None, "--mistakes", metavar="CHECKPOINT",
                                            help="Draw this checkpoint's most confident wrong predictions instead."),
    n: int = typer.Option(16, "-n", metavar="N", help="With --mistakes: how many to show."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", metavar="FILE",
                                          help="Image to write: .png, .svg or .pdf [default: curves.png, "
                                               "confusion.png, mistakes.png]."),
    set_: Optional[List[str]] = typer.Option(None, "--set", metavar="KEY=VALUE",
                                             help="With a CHECKPOINT: as for eval, e.g. data.root=DIR."),
    split: str = typer.Option("test", "--split", metavar="SPLIT", help="With a CHECKPOINT: test or val."),
    study: Optional[str] = typer.Option(None, "--study", metavar="NAME",
                                        help="Draw a `seqclf tune` study: history (one objective) or Pareto front "
                                             "(several), and importances (see tune --show; --set output.dir=DIR "
                                             "finds its default storage)."),
    storage: Optional[str] = typer.Option(None, "--storage", metavar="URL", help="With --study: its storage."),
    quiet: bool = options.QuietOption,
) -> None:
    """Draw loss and accuracy per epoch of runs, a checkpoint's confusion matrix or mistakes, or a study.

    Needs matplotlib: pip install "seqclf[plot]".
    """
    from seqclf.use import plot as pictures

    out = Output(quiet=quiet)
    with reported(out):
        if (confusion is not None) + (mistakes is not None) + bool(run_dirs) + (study is not None) != 1:
            raise SeqclfError("plot needs one of RUN_DIR... (training curves), --confusion CHECKPOINT, "
                              "--mistakes CHECKPOINT or --study NAME")
        if study is not None:
            out.info(f"wrote {pictures.draw_study(study, storage, set_ or [], output or Path('study.png'))}")
            return
        if mistakes is not None:
            path, found = pictures.plot_mistakes(mistakes, output or Path("mistakes.png"), n, split, set_ or [])
            out.info(f"wrote {path}: {len(found['true'])} of the {found['errors']} wrong predictions of {mistakes} "
                     f"on {found['total']:,} {split} examples")
            return
        if confusion is not None:
            path, result = pictures.plot_confusion(confusion, output or Path("confusion.png"), set_ or [], split)
            out.info(f"wrote {path}: confusion matrix of {confusion}, {split} accuracy {result['accuracy']:.4f}")
            return
        path, skipped = pictures.plot_curves(run_dirs, output or Path("curves.png"))
    for run_dir in skipped:
        out.warn(f"{run_dir}: no finished epoch yet; left out")
    out.info(f"wrote {path}")


@use_app.command(epilog=examples("predict"))
def predict(
    checkpoint: Path = options.CheckpointArgument,
    inputs: List[Path] = options.InputsArgument,
    top_k: int = typer.Option(1, "--top-k", min=1, metavar="K", help="Also show the next K-1 guesses."),
    no_preprocess: bool = typer.Option(False, "--no-preprocess", metavar=options.FLAG,
                                       help="Plainly resize image files instead of MNIST-style preprocessing."),
    labels: Optional[str] = typer.Option(None, "--labels", metavar="FILE.csv|folders",
                                         help="The true classes: a CSV of file,label rows, or `folders` when "
                                              "the images lie in folders named by class; prints the accuracy "
                                              "and the confusion matrix."),
    batch_size: int = typer.Option(1024, "--batch-size", min=1, metavar="N", help="Images per forward pass."),
    json_: bool = options.JsonOption,
    csv_: bool = typer.Option(False, "--csv", metavar=options.FLAG,
                              help="Print CSV (input,predicted_label,predicted_class,probability,...) on stdout."),
    quiet: bool = options.QuietOption,
) -> None:
    """Classify images with a trained model: exit 2 if any input failed (the others are still printed)."""
    out = Output(json_mode=json_ or csv_, quiet=quiet)
    with reported(out):
        from seqclf.use.predict import predict_files

        if json_ and csv_:
            raise SeqclfError("--json and --csv: choose one")
        result = predict_files(checkpoint, list(inputs), top_k, not no_preprocess, batch_size, labels=labels)
    for failure in result["errors"]:
        out.error(f"{failure['input']}: {failure['error']}")
    for warning in result["warnings"]:
        out.warn(warning)
    if json_:
        emit_json(result)
    elif csv_:
        sys.stdout.write(predictions_csv(result["predictions"], "scores" in result))
    elif result["predictions"]:
        out.predictions(result["predictions"], top_k)
    if "scores" in result and not json_:
        scores = result["scores"]
        out.info(f"accuracy [bold]{scores['accuracy']:.4f}[/], loss {scores['loss']:.4f} on {scores['n']:,} "
                 f"inputs (true classes from {scores['labels']})")
        if not csv_:
            out.confusion(scores)
    if result["errors"]:
        raise typer.Exit(2)


def predictions_csv(records: list[dict], truth: bool) -> str:
    """predict --csv: a header and one line per input; `label` and `class` last (deprecated: they repeat the
    predicted ones)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    extra = ["true_label", "true_class", "correct"] if truth else []
    writer.writerow(["input", "predicted_label", "predicted_class", "probability", *extra, "label", "class"])
    writer.writerows([r["input"], r["predicted_label"], r["predicted_class"], f"{r['probability']:.6f}",
                      *(r[key] for key in extra), r["label"], r["class"]] for r in records)
    return buffer.getvalue()


@use_app.command(epilog=examples("export"))
def export(
    checkpoint: Path = options.CheckpointArgument,
    output: Path = typer.Option(..., "--output", "-o", metavar="FILE", help="The file to write."),
    format_: str = typer.Option("onnx", "--format", metavar="onnx|pt2",
                                help="onnx (runs in onnxruntime, no torch needed) or pt2 (torch.export)."),
    json_: bool = options.JsonOption,
    quiet: bool = options.QuietOption,
) -> None:
    """Write a model taking float32 pixels 0-255 (N, H, W), returning logits and probabilities.

    The file is checked against the checkpoint before it is written.
    ONNX needs the extra: pip install "seqclf[export]".
    """
    from seqclf.use.export import export as write_model

    out = Output(json_mode=json_, quiet=quiet)
    with reported(out):
        result = write_model(checkpoint, output, format_)
    if json_:
        emit_json(result)
        return
    out.info(f"wrote {result['output']} ({result['format']}, {result['bytes']:,} bytes): input pixels float32 "
             f"({', '.join(map(str, result['input']))}) 0-255, outputs logits and probabilities over "
             f"{len(result['class_names'])} classes; largest difference from the checkpoint's own probabilities "
             f"{result['max_difference']:.1e}")
