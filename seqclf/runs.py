"""Run directories: names, atomic creation, the files inside, and the table of runs."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqclf.config import Config, all_keys, keys_where, read_yaml, suggest
from seqclf.errors import SeqclfError

CONFIG, METRICS, SUMMARY, BEST, LAST = "config.yaml", "metrics.jsonl", "summary.json", "best.pt", "last.pt"


def run_name(cfg: Config, now: dt.datetime | None = None) -> str:
    """`gru-2x128-bi-<time>`: what distinguishes the run, then the time."""
    m, d = cfg.model, cfg.data
    parts = [m.cell, f"{m.num_layers}x{m.hidden_size}"]
    if m.bidirectional:
        parts.append("bi")
    if m.proj_size:
        parts.append(f"p{m.proj_size}")
    if d.sequence != "rows":
        parts.append(d.sequence.replace("_", "-"))
    if m.impl != "fused":
        parts.append(m.impl)
    parts.append(f"s{cfg.seed}")
    parts.append((now or dt.datetime.now()).strftime("%Y%m%d-%H%M%S"))
    return "-".join(parts)


def check_writable(folder: Path) -> None:
    """Report an unwritable output folder before any training starts."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise SeqclfError(f"output.dir {str(folder)!r} cannot be written ({exc.strerror or exc}); "
                          f"choose a writable folder with --set output.dir=DIR") from None


def create_run_dir(cfg: Config) -> Path:
    """Make a new run directory atomically: an existing one is never reused or overwritten.

    os.mkdir either creates the folder or fails, so parallel jobs started in the same second
    each get their own (`name`, `name-2`, `name-3`, ...).
    """
    root = Path(cfg.output.dir)
    check_writable(root)
    if cfg.output.name is not None:
        path = root / cfg.output.name
        try:
            path.mkdir()
        except FileExistsError:
            raise SeqclfError(f"output.name: run directory {path} already exists and is never overwritten; "
                              f"pick another name, drop output.name for a generated one, or continue it "
                              f"with `seqclf train --resume {path}`") from None
        return path
    base = run_name(cfg)
    for attempt in range(1, 10_000):
        path = root / (base if attempt == 1 else f"{base}-{attempt}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise SeqclfError(f"could not create a new run directory under {root}")


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """metrics.jsonl's rows ([] when absent); a damaged file is a SeqclfError naming the line."""
    path = run_dir / METRICS
    if not path.exists():
        return []
    rows = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise SeqclfError(f"{path}: line {number} is not valid JSON ({exc}); seqclf rewrites this file "
                              f"whole after every epoch, so it was changed by something else") from None
        if not isinstance(row, dict) or not isinstance(row.get("epoch"), int):
            raise SeqclfError(f"{path}: line {number} is not an epoch's metrics object") from None
        rows.append(row)
    return rows


def read_summary(run_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((run_dir / SUMMARY).read_text())
    except (OSError, ValueError):
        return None


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and (path / CONFIG).exists()


# ---------------------------------------------------------------- the run table (`seqclf runs`)

# One row per run: what `seqclf runs --json` prints, in this order.
FIELDS = ("name", "cell", "num_layers", "hidden_size", "bidirectional", "parameters", "epochs",
          "val_accuracy", "test_accuracy", "seconds", "status")
AVERAGED = ("parameters", "epochs", "val_accuracy", "test_accuracy", "seconds")  # a group shows their mean
SPREAD = ("val_accuracy", "test_accuracy", "seconds")  # ... and these with their sample std (`<field>_std`)
BEST_FIRST = {"val_accuracy", "test_accuracy"}  # sorted high to low; everything else low to high
# Keys that may differ inside a group without making its runs different experiments.
INCIDENTAL = keys_where("incidental")


@dataclass(frozen=True)
class RunRecord:
    path: Path
    row: dict[str, Any]  # the FIELDS
    config: dict[str, Any]  # the run's config.yaml flattened to dotted keys


def find_runs(root: str | Path) -> list[Path]:
    """Run directories: root itself, its children, or their children (runs/<sweep>/<run>), sorted."""
    root = Path(root)
    if not root.is_dir():
        raise SeqclfError(f"{root}: no such folder of runs; training writes them under output.dir (default runs/)")
    if is_run_dir(root):
        return [root]
    found = []
    for child in sorted(root.iterdir()):
        if is_run_dir(child):
            found.append(child)
        elif child.is_dir():
            found += [path for path in sorted(child.iterdir()) if is_run_dir(path)]
    return found


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"model": {"cell": "gru"}} -> {"model.cell": "gru"}."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def describe_run(run_dir: Path, root: Path) -> RunRecord:
    """A run's row from what exists: summary.json, else metrics.jsonl (a killed run), and config.yaml."""
    try:
        config = flatten(read_yaml(run_dir / CONFIG))
    except SeqclfError:
        config = {}
    summary = read_summary(run_dir)
    if summary is None:  # killed before its first summary (or it was damaged): status from the files left
        try:
            history = read_metrics(run_dir)
        except SeqclfError:
            history = []
        status = "interrupted" if (run_dir / LAST).exists() else "failed"
        if (run_dir / SUMMARY).exists():
            status = "damaged"  # summary.json is there but unreadable: do not guess
        summary = {"epochs": len(history), "seconds": sum(row.get("seconds", 0.0) for row in history),
                   "val_accuracy": max((row.get("val_accuracy", 0.0) for row in history), default=None),
                   "status": status}
    row = {"name": str(run_dir.relative_to(root)) if run_dir != root else run_dir.name,
           "cell": config.get("model.cell"), "num_layers": config.get("model.num_layers"),
           "hidden_size": config.get("model.hidden_size"), "bidirectional": config.get("model.bidirectional"),
           **{key: summary.get(key) for key in ("parameters", "epochs", "val_accuracy", "test_accuracy",
                                                "seconds", "status")}}
    return RunRecord(run_dir, {key: row[key] for key in FIELDS}, config)


def list_runs(root: str | Path) -> list[RunRecord]:
    return [describe_run(path, Path(root)) for path in find_runs(root)]


def group_runs(records: list[RunRecord], keys: list[str]) -> list[dict[str, Any]]:
    """One row per distinct value of `keys`: count, means (AVERAGED), sample stds (SPREAD), the run
    names, and `differs`: the other keys (besides seed and where-to-run ones) that vary in the group."""
    check_keys(keys, "--group-by")
    groups: dict[tuple, list[RunRecord]] = {}
    for record in records:
        groups.setdefault(tuple(_hashable(record.config.get(key)) for key in keys), []).append(record)
    rows = []
    for members in groups.values():
        row: dict[str, Any] = {key: members[0].config.get(key) for key in keys}
        row["count"] = len(members)
        for field_name in AVERAGED:
            values = [m.row[field_name] for m in members if isinstance(m.row[field_name], (int, float))]
            row[field_name] = statistics.fmean(values) if values else None
            if field_name in SPREAD:
                row[f"{field_name}_std"] = statistics.stdev(values) if len(values) > 1 else None
        configs = [m.config for m in members]
        row["differs"] = sorted({key for c in configs for key in c.keys() | configs[0].keys()
                                 if c.get(key) != configs[0].get(key)} - INCIDENTAL - set(keys))
        row["runs"] = [m.row["name"] for m in members]
        rows.append(row)
    return rows


def group_columns(keys: list[str]) -> list[str]:
    return [*keys, "count", *(name for field_name in AVERAGED
                              for name in (field_name, f"{field_name}_std")[:2 if field_name in SPREAD else 1])]


def check_keys(keys: list[str], option: str) -> None:
    known = all_keys()
    unknown = [key for key in keys if key not in known]
    if unknown:
        raise SeqclfError(f"{option}: {', '.join(unknown)}: not a config key" + suggest(unknown[0], known))


def sort_rows(rows: list[dict[str, Any]], field_name: str, columns: list[str],
              reverse: bool = False) -> list[dict[str, Any]]:
    """Sort by one column (accuracies best first); runs without a value go last either way."""
    if field_name not in columns:
        raise SeqclfError(f"--sort {field_name}: not a column; choose one of {', '.join(columns)}")
    present = [row for row in rows if row.get(field_name) is not None]
    missing = [row for row in rows if row.get(field_name) is None]
    descending = (field_name in BEST_FIRST) != reverse
    return sorted(present, key=lambda row: _hashable(row[field_name]), reverse=descending) + missing


def to_csv(rows: list[dict[str, Any]], columns: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


HEADERS = {"num_layers": "layers", "hidden_size": "hidden", "bidirectional": "bi", "parameters": "params",
           "val_accuracy": "best val acc", "test_accuracy": "test acc", "seconds": "time", "count": "runs"}


def table(rows: list[dict[str, Any]], columns: list[str]) -> tuple[list[str], list[list[str]]]:
    """Headers and cells for a person: a `_std` column is shown beside its mean as `mean +- std`."""
    shown = [c for c in columns if not c.endswith("_std")]
    headers = [HEADERS.get(c.rsplit(".", 1)[-1], c.rsplit(".", 1)[-1]) for c in shown]
    cells = []
    for row in rows:
        line = []
        for column in shown:
            text = _format(column, row.get(column))
            if row.get(f"{column}_std") is not None:
                text += f" ± {_format(column, row[f'{column}_std'])}"
            line.append(text)
        cells.append(line)
    return headers, cells


def _format(column: str, value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if column.endswith("accuracy"):
        return f"{value:.4f}"
    if column == "seconds":
        return f"{value:.1f}s"
    if column in ("parameters", "epochs"):
        return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"
    return str(value)


def _hashable(value: Any) -> Any:
    return json.dumps(value, sort_keys=True) if isinstance(value, (list, dict)) else value


# ---------------------------------------------------------------- `seqclf config diff`


def run_config(path: str | Path) -> dict[str, Any]:
    """The config of a run directory (its config.yaml) or of a YAML file, as a nested dict."""
    path = Path(path)
    if path.is_dir():
        if not is_run_dir(path):
            raise SeqclfError(f"{path}: not a run directory (no {CONFIG}); `seqclf runs` lists the runs")
        path = path / CONFIG
    return read_yaml(path)


def config_diff(a: str | Path, b: str | Path) -> dict[str, list[Any]]:
    """{dotted key: [value in a, value in b]} for every key that differs, in the schema's order."""
    flat_a, flat_b = flatten(run_config(a)), flatten(run_config(b))
    order = {key: i for i, key in enumerate(all_keys())}
    keys = sorted(flat_a.keys() | flat_b.keys(), key=lambda key: (order.get(key, len(order)), key))
    return {key: [flat_a.get(key), flat_b.get(key)] for key in keys if flat_a.get(key) != flat_b.get(key)}
