"""The command line: a thin typer skin over the library. Parse, call one function, render.

Exit status: 0 success, 2 bad usage/config/input, 1 a training failure, 130 interrupted
(SIGINT), 143 terminated (SIGTERM).
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Any, Iterator, List, Optional

import typer

from seqclf.console import Output
from seqclf.errors import SeqclfError

app = typer.Typer(
    name="seqclf",
    help="Train, evaluate and compare RNN/LSTM/GRU classifiers that read images as sequences.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

SetOption = typer.Option(None, "--set", metavar="KEY=VALUE",
                         help="Override a config key (dotted, value parsed as YAML); repeatable, later wins.")
JsonOption = typer.Option(False, "--json", help="Print one JSON object on stdout; human output goes to stderr.")
QuietOption = typer.Option(False, "--quiet", "-q", help="Print only errors.")


@contextlib.contextmanager
def reported(out: Output) -> Iterator[None]:
    """The one place where exceptions become messages and exit codes."""
    try:
        yield
    except SeqclfError as exc:
        out.error(str(exc))
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        out.error("aborted; files already on disk are intact (every file is written atomically)")
        raise typer.Exit(130) from None


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data) + "\n")
    sys.stdout.flush()


@app.command(epilog="Examples:\n\n  seqclf train --config configs/lstm.yaml\n\n"
             "  seqclf train --config configs/lstm.yaml --set model.cell=gru --set train.epochs=3\n\n"
             "  seqclf train --resume runs/lstm-1x128-s0-20261123-101500 --set train.epochs=12")
def train(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML config (see configs/)."),
    set_: Optional[List[str]] = SetOption,
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue the run in this directory from last.pt."),
    json_: bool = JsonOption,
    quiet: bool = QuietOption,
) -> None:
    """Train a model; writes a run directory with config.yaml, metrics.jsonl, best.pt, last.pt, summary.json."""
    from seqclf import train as training
    from seqclf.config import load_config

    out = Output(json_mode=json_, quiet=quiet)
    with reported(out):
        if resume is not None:
            if config is not None:
                raise SeqclfError("--resume uses the run's own config.yaml; drop --config "
                                  "(only --set train.epochs=N and where-to-run keys may change)")
            summary = training.resume(resume, set_ or [], out=out)
        else:
            if config is None:
                raise SeqclfError("train needs --config FILE (e.g. --config configs/lstm.yaml) or --resume RUN_DIR")
            summary = training.train(load_config(config, set_ or []), out=out)
    if json_:
        emit_json(summary)


@app.command("eval", epilog="Examples:\n\n  seqclf eval runs/<run>/best.pt\n\n"
             "  seqclf eval runs/<run>/best.pt --json | jq .accuracy\n\n"
             "  seqclf eval runs/<run>/best.pt --set data.root=/usr/share/datasets/fashion-mnist --split val")
def eval_cmd(
    checkpoint: Path = typer.Argument(..., help="A checkpoint written by seqclf train (best.pt or last.pt)."),
    set_: Optional[List[str]] = SetOption,
    split: str = typer.Option("test", "--split", help="test or val."),
    json_: bool = JsonOption,
    quiet: bool = QuietOption,
) -> None:
    """Score a saved model on the test (or validation) split of its data."""
    from seqclf.evaluate import evaluate_checkpoint

    out = Output(json_mode=json_, quiet=quiet)
    with reported(out):
        result = evaluate_checkpoint(checkpoint, set_ or [], split)
    if json_:
        emit_json(result)
        return
    out.info(f"{checkpoint}: {split} accuracy [bold]{result['accuracy']:.4f}[/], loss {result['loss']:.4f} "
             f"on {result['n']:,} examples")
    classes = range(len(result["per_class_accuracy"]))
    out.table("per-class accuracy", ["class", *map(str, classes)],
              [["accuracy", *(f"{a:.3f}" for a in result["per_class_accuracy"])]])


def main() -> None:
    app()


if __name__ == "__main__":
    main()
