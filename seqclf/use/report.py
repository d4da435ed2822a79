"""`seqclf report`: a run (or several) as one self-contained HTML page that a person opens offline.

One run: its figures, its config against the closest shipped config, training curves, test scores per
class, the confusion matrix, calibration, accuracy by steps read, traces of a few test examples and
the most confident mistakes (seqclf.use.run_page). Several runs: a comparison table, the configs'
differences, overlaid curves (seqclf.use.comparison_page). The HTML's parts are seqclf.use.report_html;
the pictures, seqclf.use.figures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from seqclf.config import load_config
from seqclf.errors import SeqclfError
from seqclf.store.rundir import RunDir
from seqclf.use.plot import check_output

SUFFIXES = (".html", ".htm")


def write_report(paths: list[Path], output: Path, overrides: list[str] | tuple[str, ...] = (),
                 split: str = "test") -> dict[str, Any]:
    """Write the report of the runs in `paths` (run directories or folders of runs) to `output`.

    Returns {"output", "runs", "bytes"}. `overrides` are eval's --set keys (data.root=DIR, ...).
    """
    check_output(output, SUFFIXES, "report.html")
    if split not in ("test", "val"):
        raise SeqclfError(f"--split {split!r}: choose test or val")
    run_dirs = [run.path for path in paths for run in RunDir.find(path)]
    if not run_dirs:
        raise SeqclfError(f"no run directories in {', '.join(map(str, paths))} (a run holds config.yaml)")
    run_dirs = list(dict.fromkeys(run_dirs))  # a run named twice is shown once
    from seqclf.use.evaluate import eval_config

    for run_dir in run_dirs:  # a bad config or --set fails before anything is scored or drawn
        eval_config(load_config(RunDir(run_dir).config_path), overrides, RunDir(run_dir).config_path)
    if len(run_dirs) == 1:
        from seqclf.use.run_page import run_page

        text = run_page(run_dirs[0], overrides, split)
    else:
        from seqclf.use.comparison_page import comparison_page

        text = comparison_page(run_dirs, overrides, split)
    save(output, text)
    return {"output": str(output), "runs": [str(run) for run in run_dirs], "bytes": len(text.encode())}


def save(output: Path, text: str) -> None:
    from seqclf.errors import TrainingError
    from seqclf.store.files import write_text

    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        write_text(output, text)
    except (OSError, TrainingError) as exc:  # write_text's own message speaks of output.dir
        raise SeqclfError(f"-o {output}: cannot be written ({getattr(exc, 'strerror', None) or exc}); "
                          f"choose another path with -o") from None
