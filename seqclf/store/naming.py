"""Where a new run goes: its generated name (and the time stamp that ends it), a writable output.dir."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from seqclf.config import Config
from seqclf.errors import SeqclfError
from seqclf.store.files import probe_new_file

STAMP = re.compile(r"-(\d{8})-(\d{6})((?:-\d+)?)$")  # the time stamp (and -N suffix) ending a generated name


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
        probe_new_file(folder)
    except OSError as exc:
        raise SeqclfError(f"output.dir {str(folder)!r} cannot be written ({exc.strerror or exc}); "
                          f"choose a writable folder with --set output.dir=DIR") from None
