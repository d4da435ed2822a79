"""Writing files so that a crash, an interrupt or a full disk never leaves a half-written one.

Every file seqclf writes goes to a temporary name in the same folder, is flushed and fsynced,
then renamed over the old one: readers see the previous version or the new one, nothing in
between. Torch-free, so `seqclf runs` and friends stay light.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

from seqclf.errors import TrainingError


def atomic_write(path: str | Path, write: Callable[[Any], None], binary: bool = True) -> None:
    """Write `path` through a temp file in its folder + fsync + rename: all or nothing.

    A failed write (full disk, I/O error) raises TrainingError (exit 1) naming the file; the
    previous version of `path`, if any, is left exactly as it was.
    """
    path = Path(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
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
            raise TrainingError(f"{path}: could not be written ({exc.strerror or exc}); {kept}. Free some "
                                f"space or choose a writable output.dir.") from None
        raise


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
