"""Run directories: names, atomic creation, the files inside, finding runs, comparing their configs."""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from pathlib import Path
from typing import Any

from seqclf.config import Config, all_keys, to_dict
from seqclf.errors import SeqclfError
from seqclf.store import lock as runlock

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
    """Make a new run directory atomically: an existing one is never overwritten.

    os.mkdir either creates the folder or fails, so parallel jobs started in the same second
    each get their own (`name`, `name-2`, `name-3`, ...).
    The new directory is locked for this process (seqclf.store.lock) before anything is written. A
    named directory that exists is reused only when it is restartable (see `restartable`).
    """
    root = Path(cfg.output.dir)
    check_writable(root)
    if cfg.output.name is not None:
        path = root / cfg.output.name
        try:
            path.mkdir()
        except FileExistsError:
            runlock.acquire(path)  # refuses while another process trains in it
            if not restartable(path):
                runlock.release(path)
                raise SeqclfError(f"output.name: run directory {path} already exists and holds trained epochs, "
                                  f"which are never overwritten; continue it with `seqclf train --resume {path}`, "
                                  f"or pick another name (or drop output.name for a generated one)") from None
            for name in (SUMMARY, METRICS, BEST):  # a stopped set-up's leftovers: no finished epoch among them
                (path / name).unlink(missing_ok=True)
            return path
        runlock.acquire(path)
        return path
    base = run_name(cfg)
    for attempt in range(1, 10_000):
        path = root / (base if attempt == 1 else f"{base}-{attempt}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        runlock.acquire(path)
        return path
    raise SeqclfError(f"could not create a new run directory under {root}")


def restartable(run_dir: Path) -> bool:
    """True when `run_dir` holds nothing to resume and no finished epoch (stopped during set-up or
    its first epoch): training it afresh under its name loses nothing."""
    try:
        return not (run_dir / LAST).exists() and not read_metrics(run_dir)
    except SeqclfError:  # a damaged metrics.jsonl: do not guess
        return False


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


# ---------------------------------------------------------------- finding runs (the table: seqclf.store.table)


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


# ---------------------------------------------------------------- `seqclf config diff`


def run_config_path(path: str | Path) -> Path:
    """A run directory's config.yaml, or `path` itself (a YAML file or a shipped config's name)."""
    path = Path(path)
    if path.is_dir():
        if not is_run_dir(path):
            raise SeqclfError(f"{path}: not a run directory (no {CONFIG}); `seqclf runs` lists the runs")
        return path / CONFIG
    return path


def config_diff(a: Config, b: Config) -> dict[str, list[Any]]:
    """{dotted key: [value in a, value in b]} for every key whose value differs, in the schema's order."""
    flat_a, flat_b = flatten(to_dict(a)), flatten(to_dict(b))
    return {key: [flat_a[key], flat_b[key]] for key in all_keys() if flat_a[key] != flat_b[key]}
