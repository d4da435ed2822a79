"""Run directories: names, atomic creation, and the files inside."""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from pathlib import Path
from typing import Any

from seqclf.checkpoint import write_text
from seqclf.config import Config
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


def write_metrics(run_dir: Path, history: list[dict[str, Any]]) -> None:
    """metrics.jsonl: one JSON object per finished epoch, rewritten whole (atomically)."""
    write_text(run_dir / METRICS, "".join(json.dumps(row) + "\n" for row in history))


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / METRICS
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_summary(run_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((run_dir / SUMMARY).read_text())
    except (OSError, ValueError):
        return None


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and (path / CONFIG).exists()
