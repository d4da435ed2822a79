"""Commands that show inside a model: `seqclf trace` (how its belief grows as it reads) and `seqclf report`
(a run, or several, as one self-contained HTML page).

A command group that seqclf.cli.app adds to the root; thin like every command: parse, call one
library function, render through console.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from seqclf.cli import options
from seqclf.cli.common import emit_json, reported, sub_app
from seqclf.cli.examples import examples
from seqclf.console import Output

inside_app = sub_app("See inside a model: trace, report.")


@inside_app.command(epilog=examples("trace"))
def trace(
    checkpoint: Path = options.CheckpointArgument,
    inputs: List[Path] = options.InputsArgument,
    top_k: int = typer.Option(3, "--top-k", min=1, metavar="K", help="Classes shown per step in the table."),
    every: int = typer.Option(0, "--every", min=0, metavar="N",
                              help="Show every N-th step in the table (0: about 14 rows); JSON has every step."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", metavar="FILE",
                                          help="Also draw the traces (the first 8 inputs): .png, .svg or .pdf."),
    no_preprocess: bool = typer.Option(False, "--no-preprocess", metavar=options.FLAG,
                                       help="Plainly resize image files instead of MNIST-style preprocessing."),
    json_: bool = options.JsonOption,
    quiet: bool = options.QuietOption,
) -> None:
    """Class probabilities after each step read (row, column or pixel, per the checkpoint's view).

    For a unidirectional model, the probabilities after step k are its prediction on the first k steps
    alone; a bidirectional model is run on each prefix (T passes). Exit 2 if any input failed (the
    others are still shown).
    """
    from seqclf.use.trace import shown_steps, trace_files

    out = Output(json_mode=json_, quiet=quiet)
    with reported(out):
        if output is not None:  # a bad -o fails before the model loads
            from seqclf.use.plot import check_output

            check_output(output)
        result = trace_files(checkpoint, list(inputs), not no_preprocess)
        images = result.pop("images")
        steps_shown = shown_steps(result["steps"], every)
        drawn = None
        if output is not None and result["traces"]:
            from seqclf.use.figures import plot_trace

            drawn = plot_trace(result, images, output)
    for failure in result["errors"]:
        out.error(f"{failure['input']}: {failure['error']}")
    if json_:
        emit_json(result)
    else:
        out.traces(result, steps_shown, top_k)
    if drawn is not None:
        path, count = drawn
        out.info(f"wrote {path}: the traces of {count} of {len(result['traces'])} input(s)")
    if result["errors"]:
        raise typer.Exit(2)


@inside_app.command(epilog=examples("report"))
def report(
    run_dirs: List[Path] = typer.Argument(..., metavar="RUN_DIR", help="A run, or several to compare "
                                                                         "(or folders of runs)."),
    output: Path = typer.Option(Path("report.html"), "--output", "-o", metavar="FILE",
                                help="The HTML file to write."),
    set_: Optional[List[str]] = typer.Option(None, "--set", metavar="KEY=VALUE",
                                             help="As for eval, e.g. data.root=DIR when the data moved."),
    split: str = typer.Option("test", "--split", metavar="SPLIT", help="Score best.pt on test or val."),
    json_: bool = options.JsonOption,
    quiet: bool = options.QuietOption,
) -> None:
    """Write one self-contained HTML page (images and styles inline, no network) to open in a browser.

    One run: config and its difference from the closest shipped config, training curves, scores per
    class, confusion matrix, calibration, accuracy by steps read, traces, the most confident mistakes.
    Several runs: a comparison table, the keys that differ, overlaid curves. Needs matplotlib.
    """
    from seqclf.use.report import write_report

    out = Output(json_mode=json_, quiet=quiet)
    with reported(out):
        result = write_report(list(run_dirs), output, set_ or [], split)
    if json_:
        emit_json(result)
        return
    out.info(f"wrote {result['output']} ({result['bytes'] / 1e6:.2f} MB): "
             f"{'the run' if len(result['runs']) == 1 else str(len(result['runs'])) + ' runs'}; open it in a browser")
