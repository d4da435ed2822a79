"""The report page of several runs (see seqclf.use.report): a comparison table, the config keys in which
they differ, their training curves overlaid, and their accuracy by steps read overlaid (one picture per
kind of step: rows, columns, pixels)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from seqclf.store.rundir import RunDir
from seqclf.use import report_html as h
from seqclf.use.run_page import flat_config, footer, repr_value, run_config

COLUMNS = ["run", "view", "cell", "layers", "hidden", "bi", "params", "epochs", "val acc", "test acc", "ECE",
           "acc at half", "time", "status"]


def evaluated(run_dir: Path, overrides: list[str] | tuple[str, ...], split: str) -> dict[str, Any] | None:
    """eval's result for a run's best.pt, or None when it has none yet."""
    from seqclf.use.evaluate import evaluate_checkpoint

    best = RunDir(run_dir).best
    return evaluate_checkpoint(best, overrides, split) if best.exists() else None


def comparison_row(label: str, run_dir: Path, result: dict[str, Any] | None) -> list[Any]:
    cfg = run_config(run_dir)
    summary = RunDir(run_dir).read_summary() or {}
    m = cfg.model

    def number(value: Any, form: str) -> str | None:
        return format(value, form) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    by_step = result["accuracy_by_step"] if result else None
    return [label, cfg.data.sequence, m.cell, m.num_layers, m.hidden_size, "yes" if m.bidirectional else "no",
            number(summary.get("parameters"), ","), number(summary.get("epochs"), "d"),
            number(summary.get("val_accuracy"), ".4f"), number(result["accuracy"] if result else None, ".4f"),
            number(result["calibration"]["ece"] if result else None, ".4f"),
            number(by_step[len(by_step) // 2 - 1] if by_step and len(by_step) > 1 else None, ".4f"),
            (number(summary.get("seconds"), ".1f") or "\u2013") + " s", summary.get("status", "unknown")]


def differing_keys(run_dirs: list[Path], labels: list[str]) -> str:
    """A table of the config keys whose values differ between the runs, a column per run."""
    flats = [flat_config(run_config(run_dir)) for run_dir in run_dirs]
    keys = [key for key in flats[0] if len({repr_value(flat.get(key)) for flat in flats}) > 1]
    if not keys:
        return h.paragraph("The runs' configs are identical.", "note")
    return h.table(["key", *labels], [[key, *(repr_value(flat.get(key)) for flat in flats)] for key in keys])


def comparison_page(run_dirs: list[Path], overrides: list[str] | tuple[str, ...], split: str) -> str:
    """The page of several runs."""
    from seqclf.use import figures
    from seqclf.use.plot import short_labels

    labels = short_labels(run_dirs)
    results = [evaluated(run_dir, overrides, split) for run_dir in run_dirs]
    body = [h.heading(1, f"{len(run_dirs)} runs"),
            h.paragraph(f"val acc: best validation accuracy; test acc, ECE (expected calibration error) and acc at "
                        f"half (accuracy after reading half the sequence): best.pt on the {split} split. "
                        f"seqclf report RUN_DIR shows one run in full.", "lead"),
            h.table(COLUMNS, [comparison_row(label, run_dir, result)
                              for label, run_dir, result in zip(labels, run_dirs, results)]),
            h.heading(2, "Config keys that differ", "config"), differing_keys(run_dirs, labels)]
    histories = [(label, RunDir(run_dir).read_metrics()) for label, run_dir in zip(labels, run_dirs)]
    histories = [(label, history) for label, history in histories if history]
    body.append(h.heading(2, "Training curves", "curves"))
    body.append(h.figure(figures.png_data_uri(figures.draw_curves(histories)), "training curves of the runs")
                if histories else h.paragraph("No run has finished an epoch yet.", "note"))
    by_step: dict[str, list[tuple[str, list[float]]]] = {}
    for label, result in zip(labels, results):
        if result is not None and result["accuracy_by_step"] is not None:
            by_step.setdefault(result["step"], []).append((label, result["accuracy_by_step"]))
    if by_step:
        body.append(h.heading(2, "Accuracy by steps read", "reading"))
    for step, series in by_step.items():
        body.append(h.figure(figures.png_data_uri(figures.draw_accuracy_by_step(series, step, legend=True)),
                             f"accuracy by {step}s read", 640))
    body.append(footer([str(run_dir) for run_dir in run_dirs]))
    return h.page(f"seqclf report: {len(run_dirs)} runs", body)
