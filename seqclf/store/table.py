"""The table of runs (`seqclf runs`): a row per run from the files it left, columns, grouping, sorting.

A run's files may be damaged (edited, truncated, written by something else): such a run is listed
with status `damaged` and the values that could be read; it never stops the listing of the others.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqclf.config import all_keys, flatten, keys_where, suggest
from seqclf.errors import SeqclfError
from seqclf.store.rundir import STATUSES, RunDir

# One row per run: what `seqclf runs --json` prints, in this order. Validation accuracy leads:
# choose a model by it (best.pt is its best epoch); the test accuracy is the final check.
FIELDS = ("name", "dataset", "sequence", "cell", "num_layers", "hidden_size", "bidirectional", "lr", "seed",
          "parameters", "epochs", "val_accuracy", "test_accuracy", "seconds", "status")
FROM_CONFIG = {"dataset": "data.name", "sequence": "data.sequence", "cell": "model.cell",
               "num_layers": "model.num_layers", "hidden_size": "model.hidden_size",
               "bidirectional": "model.bidirectional", "lr": "train.lr", "seed": "seed"}
NUMBERS = {"parameters": int, "epochs": int, "val_accuracy": float, "test_accuracy": float, "seconds": float}
SPREAD = ("val_accuracy", "test_accuracy", "seconds")  # a group shows these with their sample std (`<field>_std`)
BEST_FIRST = {"val_accuracy", "test_accuracy"}  # sorted high to low; everything else low to high
DEFAULT_SORT = "val_accuracy"
# Keys that may differ inside a group without making its runs different experiments.
INCIDENTAL = keys_where("incidental")
HEADERS = {"sequence": "view", "num_layers": "layers", "hidden_size": "hidden", "bidirectional": "bi",
           "parameters": "params", "val_accuracy": "val acc", "test_accuracy": "test acc",
           "seconds": "time", "count": "runs"}
# On a terminal the model columns come right after the name, which is shown whole (it is what the other
# commands take); columns equal in every row are said once under the table instead.
TERMINAL_ORDER = ("name", "cell", "num_layers", "hidden_size", "bidirectional", "dataset", "sequence", "lr", "seed",
                  "parameters", "epochs", "val_accuracy", "test_accuracy", "seconds", "status")
# On a terminal still too narrow these are hidden, in this order (name, validation accuracy, status stay).
DROP_ORDER = ("parameters", "seconds", "epochs", "seed", "sequence", "dataset", "lr", "test_accuracy",
              "bidirectional", "hidden_size", "num_layers", "cell")


@dataclass(frozen=True)
class RunRecord:
    path: Path
    row: dict[str, Any]  # the FIELDS
    config: dict[str, Any]  # the run's config.yaml flattened to dotted keys


def _number(value: Any, kind: type) -> bool:
    """A finite int/float (not a bool); for `int` fields also a whole number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    return kind is float or float(value).is_integer()


def _from_summary(raw: Any) -> tuple[dict[str, Any], bool]:
    """The summary's table fields and whether anything in it was not what seqclf writes (unreadable: None)."""
    if not isinstance(raw, dict):
        return dict.fromkeys(NUMBERS), True
    values: dict[str, Any] = {}
    damaged = raw.get("status") not in STATUSES
    for key, kind in NUMBERS.items():
        value = raw.get(key)
        values[key] = value if value is None or _number(value, kind) else None
        damaged |= value is not None and values[key] is None
    return values, damaged


def _from_metrics(run_dir: RunDir) -> tuple[dict[str, Any], bool]:
    """For a run without summary.json (killed early): what metrics.jsonl says."""
    try:
        history = run_dir.read_metrics()
    except SeqclfError:
        return {"epochs": None, "seconds": None, "val_accuracy": None}, True
    seconds = [row.get("seconds") for row in history]
    accuracies = [row.get("val_accuracy") for row in history]
    damaged = not all(_number(value, float) for value in seconds + accuracies)
    return {"epochs": len(history), "seconds": math.fsum(v for v in seconds if _number(v, float)),
            "val_accuracy": max((v for v in accuracies if _number(v, float)), default=None)}, damaged


def describe_run(run_dir: RunDir | Path, root: Path) -> RunRecord:
    """A run's row from what exists: summary.json, else metrics.jsonl (a killed run), and config.yaml;
    its status as RunDir.status says (a run whose process is gone is not "running")."""
    run_dir, damaged = RunDir(run_dir), False
    try:
        config = flatten(run_dir.read_config())
    except SeqclfError:  # no config.yaml at all: stopped in set-up (RunDir.exists), not damaged
        config, damaged = {}, run_dir.config_path.exists()
    if run_dir.summary_path.exists():
        values, bad = _from_summary(run_dir.read_summary())
    else:
        values, bad = _from_metrics(run_dir)
    path = run_dir.path
    row = {"name": str(path.relative_to(root)) if path != root else path.name,
           **{name: config.get(key) for name, key in FROM_CONFIG.items()},
           **{key: values.get(key) for key in NUMBERS}, "status": "damaged" if damaged or bad else run_dir.status()}
    return RunRecord(path, {key: row[key] for key in FIELDS}, config)


def list_runs(root: str | Path) -> list[RunRecord]:
    return [describe_run(run_dir, Path(root)) for run_dir in RunDir.find(root)]


def column_of(name: str, option: str) -> str:
    """A column as given on the command line (--sort, --columns, --group-by): a field (`num_layers`), its
    header in the table (`layers`, `val acc`), its config key (`model.num_layers`) or any config key."""
    field_of = {**{key: field_name for field_name, key in FROM_CONFIG.items()},
                **{HEADERS.get(field_name, field_name): field_name for field_name in FIELDS}}
    if name in FIELDS or name in field_of:
        return field_of.get(name, name)
    if name in all_keys():
        return name
    raise SeqclfError(f"{option} {name}: not a column or config key (the columns of --json, the table's headers, "
                      f"or any key that seqclf config show prints)" + suggest(name, [*FIELDS, *field_of, *all_keys()]))


def rows_of(records: list[RunRecord], columns: list[str]) -> list[dict[str, Any]]:
    """The FIELDS of each run plus the config keys among `columns`."""
    return [{**record.row, **{c: record.config.get(c) for c in columns if c not in record.row}} for record in records]


def group_runs(records: list[RunRecord], keys: list[str]) -> list[dict[str, Any]]:
    """One row per distinct value of the config `keys`: count, means, sample stds (SPREAD), the run names,
    and `differs`: the other keys (besides seed and where-to-run ones) that vary in the group.

    A mean of equal whole numbers (parameters, epochs) stays that integer."""
    keys = [FROM_CONFIG.get(column_of(key, "--group-by"), key) for key in keys]
    groups: dict[tuple, list[RunRecord]] = {}
    for record in records:
        groups.setdefault(tuple(_hashable(record.config.get(key)) for key in keys), []).append(record)
    rows = []
    for members in groups.values():
        row: dict[str, Any] = {key: members[0].config.get(key) for key in keys}
        row["count"] = len(members)
        for field_name in NUMBERS:
            values = [m.row[field_name] for m in members if m.row[field_name] is not None]
            row[field_name] = (None if not values else values[0] if len(set(values)) == 1
                               else statistics.fmean(values))
            if field_name in SPREAD:
                row[f"{field_name}_std"] = statistics.stdev(values) if len(values) > 1 else None
        configs = [m.config for m in members]
        row["differs"] = sorted({key for c in configs for key in c.keys() | configs[0].keys()
                                 if c.get(key) != configs[0].get(key)} - INCIDENTAL - set(keys))
        row["runs"] = [m.row["name"] for m in members]
        rows.append(row)
    return rows


def group_columns(keys: list[str]) -> list[str]:
    keys = [FROM_CONFIG.get(column_of(key, "--group-by"), key) for key in keys]
    return [*keys, "count", *(name for field_name in NUMBERS
                              for name in (field_name, f"{field_name}_std")[:2 if field_name in SPREAD else 1])]


def sort_rows(rows: list[dict[str, Any]], column: str, reverse: bool = False) -> list[dict[str, Any]]:
    """Sort by one column (accuracies best first); rows without a value go last either way.

    Values of different types (a damaged file, `auto` among sizes) sort apart: numbers, then
    yes/no, then words, never raising."""
    present = [row for row in rows if row.get(column) is not None]
    missing = [row for row in rows if row.get(column) is None]
    descending = (column in BEST_FIRST) != reverse
    return sorted(present, key=lambda row: _order(row[column]), reverse=descending) + missing


def _order(value: Any) -> tuple[int, Any]:
    if isinstance(value, bool):
        return (1, value)
    if isinstance(value, (int, float)):
        return (0, value)
    return (2, value) if isinstance(value, str) else (3, json.dumps(value, sort_keys=True, default=str))


def to_csv(rows: list[dict[str, Any]], columns: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def header(column: str) -> str:
    """`val_accuracy` -> `val acc`; a config key by its field's header, else in full (`data.root`)."""
    name = {key: field_name for field_name, key in FROM_CONFIG.items()}.get(column, column)
    return HEADERS.get(name, name)


def terminal_columns(rows: list[dict[str, Any]], columns: list[str]) -> tuple[list[str], list[str]]:
    """The columns of the table on a terminal, in TERMINAL_ORDER, without those whose value is the same in
    every row (of two or more): returned as `header value` texts for a line under the table."""
    ordered = [c for c in TERMINAL_ORDER if c in columns] + [c for c in columns if c not in TERMINAL_ORDER]
    if len(rows) < 2:
        return ordered, []
    same = [c for c in ordered if c != "name" and len({_format(c, row.get(c)) for row in rows}) == 1]
    return [c for c in ordered if c not in same], [f"{header(c)} {_format(c, rows[0].get(c))}" for c in same]


def table(rows: list[dict[str, Any]], columns: list[str]) -> tuple[list[str], list[list[str]]]:
    """Headers and cells for a person: a `_std` column is shown beside its mean as `mean ± std`."""
    shown = [c for c in columns if not c.endswith("_std")]
    cells = []
    for row in rows:
        line = []
        for column in shown:
            text = _format(column, row.get(column))
            if row.get(f"{column}_std") is not None:
                text += f" ± {_format(column, row[f'{column}_std'])}"
            line.append(text)
        cells.append(line)
    return [header(c) for c in shown], cells


def _format(column: str, value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if not isinstance(value, (int, float)):
        return str(value)
    if column.endswith("accuracy"):
        return f"{value:.4f}"
    if column == "seconds":
        return f"{value:.1f}s"
    if isinstance(value, float) and column in NUMBERS:  # a mean of whole numbers: no false precision
        return f"~{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}" if column in NUMBERS else str(value)
    return f"{value:g}"


def _hashable(value: Any) -> Any:
    return json.dumps(value, sort_keys=True) if isinstance(value, (list, dict)) else value
