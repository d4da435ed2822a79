"""Input files checked before they are read: paths given by name, folders walked, .npy headers.

A FIFO or device given by name would block or never end, so only regular files and folders are
read; a subfolder that cannot be listed is reported, not skipped silently.

numpy trusts the header's shape: a file of a few bytes claiming (10**11, 28, 28) would have it
allocate terabytes, or fail deep inside with a raw error. Here the shape must be what the file
holds and fit in memory, the dtype must be plain numbers, and pickled objects are never loaded.
"""

from __future__ import annotations

import gzip
import math
import os
import stat
from pathlib import Path

import numpy as np

from seqclf.config.limits import check_memory
from seqclf.data.idx import DataError


def read_npy(path: Path) -> np.ndarray:
    """The array in a .npy file; DataError (naming the file) when its header promises what it cannot hold."""
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                np.lib.format.read_array_header_2_0
            shape, _, dtype = read_header(handle)
            offset, length = handle.tell(), os.fstat(handle.fileno()).st_size
    except Exception as exc:  # numpy's header parser raises ValueError, SyntaxError, TypeError, TokenError, ...
        raise DataError(f"{path}: not a readable .npy array ({' '.join(str(exc).split())[:200]})") from None
    if dtype.hasobject or dtype.kind not in "biuf":
        raise DataError(f"{path}: a .npy array of {dtype}; give pixel values 0..255 (uint8) or plain numbers")
    if min(shape, default=0) < 0:
        raise DataError(f"{path}: its header gives negative sizes {shape}; the file is damaged")
    expected = math.prod(shape) * dtype.itemsize
    if expected != length - offset:
        raise DataError(f"{path}: its header promises {shape} {dtype} = {expected:,} bytes of data but the file "
                        f"holds {length - offset:,}; the file is damaged or cut short")
    check_memory(f"{path}: its header's {shape} {dtype}", 2 * expected, "give fewer images per file", DataError)
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, OverflowError) as exc:  # OverflowError: a size past 2**63, 0 bytes in all
        raise DataError(f"{path}: not a readable .npy array ({exc})") from None


def image_suffixes() -> set[str]:
    """File name endings of the image formats this Pillow can open (.png, .jpg, .gif, .tif, .webp, ...)."""
    from PIL import Image

    return {ext for ext, kind in Image.registered_extensions().items() if kind in Image.OPEN} - {".pdf", ".eps", ".ps"}


def unusable(path: Path) -> str | None:
    """Why a path given by name cannot be read as an input, or None: a FIFO would block the read forever."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return f"a broken symbolic link (to {os.readlink(path)})" if path.is_symlink() else "no such file or folder"
    except OSError as exc:  # a symbolic link that loops, a name too long, a folder above it unreadable
        return f"cannot be read ({exc.strerror or exc})"
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        return ("not a regular file (a FIFO, socket or device); give an image file, a folder of them, an IDX "
                "file or a .npy array")
    return None


def image_files(folder: Path, errors: list[tuple[str, str]], others: list[Path] | None = None) -> list[Path]:
    """The image files under `folder` (hidden names skipped); each subfolder that cannot be read is an error.
    `others` collects the files whose names are not an image format's (a folder dataset refuses them)."""
    suffixes, found = image_suffixes(), []

    def unreadable(exc: OSError) -> None:
        errors.append((str(exc.filename), f"a folder that cannot be read ({exc.strerror or exc}); its images "
                                          f"were skipped"))

    for top, folders, names in os.walk(folder, onerror=unreadable):
        folders[:] = [name for name in folders if not name.startswith(".")]
        files = [Path(top, name) for name in names if not name.startswith(".") and Path(top, name).is_file()]
        found += [path for path in files if path.suffix.lower() in suffixes]
        if others is not None:
            others += sorted(path for path in files if path.suffix.lower() not in suffixes)
    return sorted(found)


def first_bytes(path: Path) -> bytes:
    """The first bytes of a file, decompressed when it is gzip."""
    with path.open("rb") as handle:
        head = handle.read(8)
    if head[:2] == b"\x1f\x8b":
        try:
            with gzip.open(path, "rb") as handle:
                return handle.read(8)
        except (OSError, EOFError):
            return head
    return head
