"""Writing files so that a crash, an interrupt or a full disk never leaves a half-written one.

Every file seqclf writes goes to a temporary name in the same folder, is flushed and fsynced,
then renamed over the old one: readers see the previous version or the new one, nothing in
between. Torch-free, so `seqclf runs` and friends stay light.

A temporary name carries its writer's PID (`.NAME.PID.XXXXXXXX.tmp`): a process killed mid-write
(SIGKILL, power loss) leaves one behind, and the next write into that folder removes the ones
whose process is gone and that are over a minute old (the age guards against PIDs of another
machine or container sharing the folder).
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from seqclf.errors import SeqclfError, TrainingError


def atomic_write(path: str | Path, write: Callable[[Any], None], binary: bool = True,
                 fix: str = "Free some space or choose a writable output.dir.") -> None:
    """Write `path` through a temp file in its folder + fsync + rename: all or nothing.

    A symbolic link is written through (the file it points to is replaced, the link stays); a
    path that is not a regular file (/dev/full, a FIFO) is refused with SeqclfError, since the
    rename would replace it. A failed write (full disk, I/O error) raises TrainingError (exit 1)
    naming the file and ending with `fix`; the previous version of `path`, if any, is left
    exactly as it was.
    """
    path = output_file(path)
    tmp = None
    try:
        remove_stale_temps(path.parent)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
        os.chmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the mode a plain open() would
        with os.fdopen(fd, "wb" if binary else "w", encoding=None if binary else "utf-8") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:  # also KeyboardInterrupt: never leave a half-written file behind
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        if isinstance(exc, OSError):
            kept = "its previous version is intact" if path.exists() else "nothing was written"
            raise TrainingError(f"{path}: could not be written ({exc.strerror or exc}); {kept}. {fix}") from None
        raise


def probe_new_file(folder: Path) -> None:
    """Make and drop a temp file in `folder`: OSError when it takes no new file (read-only, no permission, /sys),
    so a check before any work meets what the write after it would."""
    with tempfile.TemporaryFile(dir=folder):
        pass


def output_file(path: str | Path, option: str = "") -> Path:
    """The regular file that writing `path` replaces: a symbolic link's target (followed to the end),
    or `path` itself; SeqclfError when it exists and is not a regular file, or cannot be looked at.
    `option` (e.g. "-o") starts the message."""
    path = Path(path)
    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    named = f"{option} {path}" if option else str(path)
    fix = f"choose another path with {option}" if option else "give the path of a regular file"
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        return target
    except OSError as exc:  # a link that loops, a folder above it that cannot be entered
        raise SeqclfError(f"{named}: cannot be written ({exc.strerror or exc}); {fix}") from None
    if stat.S_ISDIR(mode):
        raise SeqclfError(f"{named}: is a folder; give a file name in it, or {fix}")
    if not stat.S_ISREG(mode):
        kind = ("a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a FIFO" if stat.S_ISFIFO(mode)
                else "a socket")
        raise SeqclfError(f"{named}: not a regular file ({kind}); seqclf writes a file by replacing it, which "
                          f"would replace {kind}; {fix}")
    return target


_TEMP = re.compile(r"^\..+\.(\d+)\.[a-z0-9_]{8}\.tmp$")  # .NAME.PID.XXXXXXXX.tmp: mkstemp's 8 characters
STALE_SECONDS = 60


def remove_stale_temps(folder: Path) -> list[Path]:
    """Remove the temporary files in `folder` left by writers that died mid-write; returns them."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        match = _TEMP.match(entry.name)
        if match is None or int(match.group(1)) == os.getpid() or pid_alive(int(match.group(1))):
            continue
        try:
            if now - entry.stat().st_mtime > STALE_SECONDS:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:  # gone already, or not ours to remove
            pass
    return removed


def pid_alive(pid: int) -> bool:
    """Whether a process with this PID exists on this machine (one of another user's counts)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True
    return True


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda handle: handle.write(text), binary=False)


def to_json(data: Any, indent: int | None = None) -> str:
    """Strict JSON (RFC 8259): a non-finite float (an fp16 overflow, a diverged loss) becomes null,
    never the `NaN`/`Infinity` that Python's json writes and other parsers reject."""
    return json.dumps(_finite(data), indent=indent, allow_nan=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def write_json(path: str | Path, data: Any) -> None:
    write_text(path, to_json(data, indent=2) + "\n")
