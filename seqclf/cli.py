"""The command line: a thin typer skin over the library. Parse, call one function, render.

Exit status: 0 success, 2 bad usage/config/input, 1 a training failure, 130 interrupted
(SIGINT), 143 terminated (SIGTERM).
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
from pathlib import Path
from typing import Any, Iterator, List, Optional

import typer

from seqclf import ranks
from seqclf.console import Output
from seqclf.errors import SeqclfError
from seqclf.files import to_json

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
        if ranks.should_report(exc):  # under torchrun rank 0 reports what every rank shares
            out.error(str(exc))
        else:
            ranks.linger()
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        out.error("aborted; files already on disk are intact (every file is written atomically)")
        raise typer.Exit(130) from None


def emit_json(data: Any) -> None:
    sys.stdout.write(to_json(data) + "\n")  # strict: a non-finite value is null
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
    if json_ and ranks.is_main_process():
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
              [["accuracy", *("-" if a is None else f"{a:.3f}" for a in result["per_class_accuracy"])]])


@app.command(epilog="Examples:\n\n  seqclf shapes --config configs/bilstm.yaml\n\n"
             "  seqclf shapes --config configs/lstm.yaml --set data.sequence=pixels --batch 32\n\n"
             "  seqclf shapes --config configs/lstm.yaml --set model.proj_size=64 --json | jq .total_parameters")
def shapes(
    config: Path = typer.Option(..., "--config", "-c", help="YAML config (see configs/)."),
    set_: Optional[List[str]] = SetOption,
    batch: int = typer.Option(8, "--batch", metavar="N", help="Batch size B of the forward pass."),
    json_: bool = JsonOption,
) -> None:
    """Show the model's tensor shapes (from a real forward pass) and every parameter with its formula."""
    from seqclf.config import load_config
    from seqclf.shapes import TENSORS, inspect_shapes

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


# ---------------------------------------------------------------- configs, the run table, pictures

config_app = typer.Typer(help="Show, check and compare configs.", no_args_is_help=True,
                         context_settings={"help_option_names": ["-h", "--help"]})
app.add_typer(config_app, name="config")


@config_app.command("show", epilog="Examples:\n\n  seqclf config show --config configs/gru.yaml\n\n"
                    "  seqclf config show -c configs/lstm.yaml --set model.cell=gru --set model.cell=rnn   # later wins\n\n"
                    "  seqclf config show -c configs/gru.yaml --set model.hidden_size=auto --set model.param_budget=50000")
def config_show(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML config (see configs/); defaults if left out."),
    set_: Optional[List[str]] = SetOption,
) -> None:
    """Print the resolved config (defaults, then the file, then each --set; validated) as YAML."""
    from seqclf.config import AUTO, load_config, to_yaml

    out = Output()
    with reported(out):
        cfg = load_config(config, set_ or [])
        if cfg.model.hidden_size == AUTO and cfg.data.name != "idx":  # torchvision's sets: 28x28, 10 classes
            from seqclf.data import view_shape
            from seqclf.model import resolve_hidden_size

            cfg = resolve_hidden_size(cfg, view_shape(cfg.data.sequence)[1])
    sys.stdout.write(to_yaml(cfg))


@config_app.command("validate", epilog="Examples:\n\n  seqclf config validate configs/*.yaml\n\n"
                    "  seqclf config validate my.yaml && scripts/sweep.sh   # check before a long sweep")
def config_validate(
    files: List[Path] = typer.Argument(..., metavar="FILE...", help="YAML configs to check."),
    quiet: bool = QuietOption,
) -> None:
    """Check config files (keys, types, ranges) without training: exit 0 if all are valid, 2 if not."""
    from seqclf.config import load_config

    out = Output(quiet=quiet)
    with reported(out):
        invalid = 0
        for path in files:
            try:
                load_config(path)
                out.info(f"{path}: ok")
            except SeqclfError as exc:
                out.error(str(exc))
                invalid += 1
        if invalid:
            raise SeqclfError(f"{invalid} of {len(files)} config files are invalid")


@config_app.command("diff", epilog="Examples:\n\n  seqclf config diff runs/lstm-1x128-s0-20261123-101500 "
                    "runs/gru-1x128-s0-20261123-103000\n\n"
                    "  seqclf config diff runs/<run> configs/lstm.yaml --json")
def config_diff(
    run_a: Path = typer.Argument(..., metavar="RUN_A", help="A run directory (or a YAML config)."),
    run_b: Path = typer.Argument(..., metavar="RUN_B", help="Another run directory (or a YAML config)."),
    json_: bool = typer.Option(False, "--json", help="Print {key: [value in A, value in B]} as JSON."),
) -> None:
    """Show the config keys that differ between two runs."""
    from seqclf.runs import config_diff as diff

    out = Output(json_mode=json_)
    with reported(out):
        changes = diff(run_a, run_b)
    if json_:
        emit_json(changes)
    elif not changes:
        out.info(f"no differences: {run_a} and {run_b} have the same config")
    else:
        shown = lambda value: json.dumps(value) if value is None or isinstance(value, bool) else str(value)  # noqa: E731
        out.table(None, ["key", str(run_a), str(run_b)], [[key, shown(a), shown(b)] for key, (a, b) in changes.items()])


@app.command("runs", epilog="Examples:\n\n  seqclf runs\n\n  seqclf runs runs/sweep --sort test_accuracy\n\n"
             "  seqclf runs runs/sweep --group-by model.cell,model.num_layers,model.bidirectional\n\n"
             "  seqclf runs --json | jq -r '.[] | select(.status == \"finished\") | .name'\n\n"
             "  seqclf runs --csv > runs.csv")
def runs_cmd(
    directory: Path = typer.Argument(Path("runs"), metavar="[DIR]", help="Folder of runs (also DIR/*/<run>)."),
    sort: Optional[str] = typer.Option(None, "--sort", metavar="COLUMN",
                                       help="Sort by a column: accuracies best first, others ascending."),
    reverse: bool = typer.Option(False, "--reverse", help="Reverse the order."),
    group_by: Optional[str] = typer.Option(None, "--group-by", metavar="KEY,KEY",
                                           help="One row per distinct value of these config keys (runs that differ "
                                                "only in seed): count, mean +- std."),
    json_: bool = typer.Option(False, "--json", help="Print a JSON array of rows on stdout."),
    csv_: bool = typer.Option(False, "--csv", help="Print CSV (a header line, then one line per row) on stdout."),
    quiet: bool = QuietOption,
) -> None:
    """List the runs under DIR: model, parameters, epochs, accuracies, training time and status."""
    from seqclf import runs

    out = Output(json_mode=json_ or csv_, quiet=quiet)
    with reported(out):
        if json_ and csv_:
            raise SeqclfError("choose one of --json and --csv")
        records = runs.list_runs(directory)
        if group_by is not None:
            keys = [key.strip() for key in group_by.split(",") if key.strip()]
            if not keys:
                raise SeqclfError("--group-by: give config keys, e.g. model.cell,model.num_layers")
            rows, columns = runs.group_runs(records, keys), runs.group_columns(keys)
        else:
            rows, columns = [record.row for record in records], list(runs.FIELDS)
        rows = runs.sort_rows(rows, sort, columns, reverse) if sort else rows[::-1] if reverse else rows
    for row in rows:
        if row.get("differs"):
            out.warn(f"group {', '.join(str(row[k]) for k in keys)} mixes runs that also differ in "
                     f"{', '.join(row['differs'])}")
    if json_:
        emit_json(rows)
    elif csv_:
        sys.stdout.write(runs.to_csv(rows, columns))
    elif not rows:
        out.info(f"no runs under {directory}")
    else:
        out.table(None, *runs.table(rows, columns))


@app.command(epilog="Examples:\n\n  seqclf plot runs/lstm-1x128-s0-20261123-101500\n\n"
             "  seqclf plot runs/lstm-* runs/gru-* -o curves.png\n\n"
             "  seqclf plot runs/sweep -o sweep.svg   # every run in the folder\n\n"
             "  seqclf plot --confusion runs/<run>/best.pt -o confusion.png")
def plot(
    run_dirs: Optional[List[Path]] = typer.Argument(None, metavar="RUN_DIR...",
                                                    help="Runs to overlay (or folders of runs)."),
    confusion: Optional[Path] = typer.Option(None, "--confusion", metavar="CHECKPOINT",
                                             help="Draw this checkpoint's confusion matrix instead."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", metavar="FILE.png",
                                          help="Image to write: .png, .svg or .pdf [default: curves.png, "
                                               "confusion.png with --confusion]."),
    set_: Optional[List[str]] = typer.Option(None, "--set", metavar="KEY=VALUE",
                                             help="With --confusion: as for eval, e.g. data.root=DIR."),
    split: str = typer.Option("test", "--split", help="With --confusion: test or val."),
    quiet: bool = QuietOption,
) -> None:
    r"""Draw loss and accuracy per epoch of one or more runs, or a checkpoint's confusion matrix.

    Needs matplotlib: pip install "seqclf\[plot]".
    """
    from seqclf import plot as pictures

    out = Output(quiet=quiet)
    with reported(out):
        if (confusion is None) == (not run_dirs):
            raise SeqclfError("plot needs either RUN_DIR... (training curves) or --confusion CHECKPOINT")
        if confusion is not None:
            path, result = pictures.plot_confusion(confusion, output or Path("confusion.png"), set_ or [], split)
            out.info(f"wrote {path}: confusion matrix of {confusion}, {split} accuracy {result['accuracy']:.4f}")
            return
        path, skipped = pictures.plot_curves(run_dirs, output or Path("curves.png"))
    for run_dir in skipped:
        out.warn(f"{run_dir}: no finished epoch yet; left out")
    out.info(f"wrote {path}")


@app.command(epilog="Examples:\n\n  seqclf bench --config configs/lstm.yaml --set data.name=fashion_mnist "
             "--set data.root=/usr/share/datasets/fashion-mnist\n\n"
             "  seqclf bench --config configs/lstm.yaml --set model.hidden_size=256 --set train.batch_size=256 --json\n\n"
             "  seqclf bench --config configs/lstm.yaml --baseline --steps 200   # also the DataLoader pipeline\n\n"
             "  bash scripts/bench.sh -o bench.md   # the standard table")
def bench(
    config: Path = typer.Option(..., "--config", "-c", help="YAML config (see configs/)."),
    set_: Optional[List[str]] = SetOption,
    baseline: bool = typer.Option(False, "--baseline",
                                  help="Also time the conventional pipeline (per-image ToTensor/Normalize, "
                                       "DataLoader) with the same model, batch size and optimizer."),
    steps: int = typer.Option(100, "--steps", min=1, metavar="N",
                              help="Training steps timed per pipeline, split over 5 interleaved rounds "
                                   "(rounded down to a multiple of 5, at least 5)."),
    json_: bool = JsonOption,
) -> None:
    """Time training and evaluation: examples/s, GFLOP/s against this machine's fp32 matmul, loop overhead."""
    from seqclf.bench import bench as run_bench
    from seqclf.config import load_config

    out = Output(json_mode=json_)
    with reported(out):
        result = run_bench(load_config(config, set_ or []), baseline=baseline, steps=steps)
    if json_:
        emit_json(result)
        return
    out.info(f"{result['model']}, batch {result['batch_size']}, {result['precision']} on {result['device']} "
             f"({result['threads']} threads); medians of {result['rounds']} rounds, {result['steps']} steps each pipeline")
    rows = [["train (seqclf loop)", f"{result['train_examples_per_s']:,.0f}", ""],
            ["bare step", f"{result['bare_examples_per_s']:,.0f}", f"loop efficiency {result['loop_efficiency']:.0%}"],
            ["eval (test split)", f"{result['eval_examples_per_s']:,.0f}", f"{result['eval_to_train']:.1f}x train"]]
    if baseline:
        rows.append(["conventional DataLoader", f"{result['baseline_train_examples_per_s']:,.0f}",
                     f"seqclf {result['speedup']:.1f}x faster"])
    out.table(None, ["pipeline", "examples/s", "ratio"], rows)
    out.info(f"training {result['flops_per_example'] / 1e6:,.2f} MFLOP/example: {result['achieved_gflops']:,.1f} "
             f"GFLOP/s achieved, fp32 matmul {result['peak_gflops']:,.1f} GFLOP/s: {result['efficiency']:.0%} of it")


def main() -> None:
    ranks.run_cli(app)


if __name__ == "__main__":
    main()
