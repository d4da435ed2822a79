"""The command line: a thin typer skin over the library. Parse, call one function, render.

Exit status: 0 success, 2 bad usage/config/input, 1 a training failure, 130 interrupted
(SIGINT), 143 terminated (SIGTERM).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import List, Optional

import typer

from seqclf import __version__
from seqclf.cli import options
from seqclf.cli.common import HELP_SETTINGS, emit_json, reported
from seqclf.cli.configs import config_app
from seqclf.cli.examples import examples
from seqclf.cli.inside import inside_app
from seqclf.cli.runs import runs_app
from seqclf.cli.tune import tune_app
from seqclf.cli.use import use_app
from seqclf.config.limits import check_path
from seqclf.console import Output
from seqclf.errors import SeqclfError
from seqclf.training import ranks

app = typer.Typer(
    name="seqclf",
    help="Train, evaluate and compare RNN/LSTM/GRU classifiers that read images as sequences.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help text is shown as written (see cli_shared)
    context_settings=HELP_SETTINGS,
)
app.add_typer(config_app, name="config")
app.add_typer(runs_app, name="runs")  # `seqclf runs`, `seqclf runs rm`
app.add_typer(use_app)  # plot, predict, export
app.add_typer(tune_app)  # `seqclf tune`
app.add_typer(inside_app)  # trace, report


def _version(shown: bool) -> None:
    if shown:
        sys.stdout.write(f"seqclf {__version__}\n")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", metavar=options.FLAG, callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """Train, evaluate and compare RNN/LSTM/GRU classifiers that read images as sequences."""


@app.command(epilog=examples("train"))
def train(
    config: Optional[Path] = options.OptionalConfigOption,
    set_: Optional[List[str]] = options.SetOption,
    resume: Optional[Path] = typer.Option(None, "--resume", metavar="RUN_DIR",
                                          help="Continue the run in this directory from last.pt."),
    init_from: Optional[Path] = typer.Option(None, "--init-from", metavar="CHECKPOINT",
                                             help="Start a new run from this checkpoint's weights (fine-tuning)."),
    json_: bool = options.JsonOption,
    quiet: bool = options.QuietOption,
) -> None:
    """Train a model; writes a run directory with config.yaml, metrics.jsonl, best.pt, last.pt, summary.json."""
    from seqclf.config import load_config

    out = Output(json_mode=json_, quiet=quiet)
    with reported(out):
        if resume is not None and (config is not None or init_from is not None):
            raise SeqclfError("--resume uses the run's own config.yaml and weights; drop --config and "
                              "--init-from (only --set train.epochs=N and where-to-run keys may change)")
        if resume is None and config is None:
            raise SeqclfError("train needs --config FILE (or a shipped config: --config lstm) or --resume RUN_DIR")
        cfg = load_config(config, set_ or []) if resume is None else None  # a bad config fails before torch loads
        from seqclf.training import start as training
        summary = (training.train(cfg, out=out, init_from=init_from) if cfg is not None else
                   training.resume(check_path("--resume", resume), set_ or [], out=out))
    if not ranks.is_main_process():  # under torchrun rank 0 speaks
        return
    if json_:
        emit_json(summary)
    elif summary.get("status") == "finished":
        out.next_steps(summary)


@app.command("eval", epilog=examples("eval"))
def eval_cmd(
    checkpoint: Path = options.CheckpointArgument,
    set_: Optional[List[str]] = options.SetOption,
    split: str = typer.Option("test", "--split", metavar="SPLIT", help="test or val."),
    json_: bool = options.JsonOption,
    quiet: bool = options.QuietOption,
) -> None:
    """Score a saved model on the test (or validation) split of its data."""
    from seqclf.use.evaluate import evaluate_checkpoint

    out = Output(json_mode=json_, quiet=quiet)
    with reported(out):
        result = evaluate_checkpoint(checkpoint, set_ or [], split)
    for warning in result["data_warnings"]:
        out.warn(warning)
    if json_:
        emit_json(result)
        return
    out.evaluation(result, checkpoint)


@app.command(epilog=examples("shapes"))
def shapes(
    config: Path = options.ConfigOption,
    set_: Optional[List[str]] = options.SetOption,
    batch: int = typer.Option(8, "--batch", metavar="N", help="Batch size B of the forward pass."),
    json_: bool = options.JsonOption,
) -> None:
    """Show the model's tensor shapes (from a real forward pass) and every parameter with its formula."""
    from seqclf.config import load_config
    from seqclf.model.shapes import TENSORS, inspect_shapes

    out = Output(json_mode=json_)
    with reported(out):
        result = inspect_shapes(load_config(config, set_ or []), batch)
    if json_:
        emit_json(result)
        return
    m = result["model"]
    out.info(f"{m['cell']} ({m['impl']}), {m['num_layers']} layer(s), "
             f"{'bidirectional' if m['bidirectional'] else 'unidirectional'}, hidden_size {result['hidden_size']}"
             f"{', proj_size ' + str(m['proj_size']) if m['proj_size'] else ''}; data.sequence {result['sequence']}: "
             f"T={result['seq_len']} steps of F={result['input_size']} features; batch B={result['batch']}")
    out.table("tensors", ["name", "formula", "shape"],
              [[name, formula, str(tuple(result[name])) if result[name] is not None else "none (LSTM only)"]
               for name, formula in TENSORS.items()])
    rows = [[name, result["formulas"][name], str(tuple(shape)), f"{math.prod(shape):,}"]
            for name, shape in result["parameters"].items()]
    out.table("parameters", ["name", "formula", "shape", "count"],
              rows + [["total", "", "", f"{result['total_parameters']:,}"]])


@app.command(epilog=examples("bench"))
def bench(
    config: Path = options.ConfigOption,
    set_: Optional[List[str]] = options.SetOption,
    baseline: bool = typer.Option(False, "--baseline", metavar=options.FLAG,
                                  help="Also time the conventional pipeline (per-image ToTensor/Normalize, "
                                       "DataLoader) with the same model, batch size and optimizer."),
    steps: int = typer.Option(100, "--steps", min=1, metavar="N",
                              help="Training steps timed per pipeline, split over 5 interleaved rounds "
                                   "(rounded down to a multiple of 5, at least 5)."),
    json_: bool = options.JsonOption,
) -> None:
    """Time training and evaluation: examples/s, GFLOP/s against this machine's fp32 matmul, loop overhead."""
    from seqclf.config import load_config
    from seqclf.use.bench import bench as run_bench
    from seqclf.use.bench import contention, ratio_text

    out = Output(json_mode=json_)
    with reported(out):
        result = run_bench(load_config(config, set_ or []), baseline=baseline, steps=steps)
    if contention(result):  # on stderr, with --json too
        out.warn(contention(result))
    if json_:
        emit_json(result)
        return
    out.info(f"{result['model']}, batch {result['batch_size']}, {result['precision']} on {result['device']} "
             f"({result['threads']} threads); medians of {result['rounds']} rounds, {result['steps']} steps "
             f"each pipeline")
    rows = [["train (seqclf loop)", f"{result['train_examples_per_s']:,.0f}", ""],
            ["bare step", f"{result['bare_examples_per_s']:,.0f}", f"loop efficiency {result['loop_efficiency']:.0%}"],
            ["eval (test split)", f"{result['eval_examples_per_s']:,.0f}", f"{result['eval_to_train']:.1f}x train"]]
    if baseline:
        rows.append(["conventional DataLoader", f"{result['baseline_train_examples_per_s']:,.0f}",
                     f"seqclf {ratio_text(result['speedup'])}"])
    out.table(None, ["pipeline", "examples/s", "ratio"], rows)
    out.info(f"training {result['flops_per_example'] / 1e6:,.2f} MFLOP/example: {result['achieved_gflops']:,.1f} "
             f"GFLOP/s achieved, fp32 matmul {result['peak_gflops']:,.1f} GFLOP/s: {result['efficiency']:.0%} of it")


def main() -> None:
    ranks.run_cli(app)



if __name__ == "__main__":
    main()
