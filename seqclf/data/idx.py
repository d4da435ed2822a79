"""The IDX file format (MNIST's): big-endian int32 magic 0x000008<ndim>, ndim int32 sizes, then
the unsigned bytes. Every header is checked before its data is read, so a damaged file is a
message naming it, never a huge allocation or a traceback.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from seqclf.config.limits import check_memory
from seqclf.errors import SeqclfError

if TYPE_CHECKING:
    import torch


class DataError(SeqclfError):
    """A data problem the user can fix: missing, corrupt or inconsistent files (exit 2)."""


# IDX magic: two zero bytes, a type code (0x08 = unsigned byte), the number of dimensions.
_VALID_MAGIC = "0x00000803 (images, 3 dims) or 0x00000801 (labels, 1 dim)"


def read_idx(path: Path) -> torch.Tensor:
    """One IDX file (plain, or gzip when the name ends in .gz) as a uint8 tensor of its dims.

    The header is checked before any data is read: dims below zero are refused, and the bytes
    they promise must be what a plain file holds and must fit in memory.
    """
    path = Path(path)
    gz = path.suffix == ".gz"
    try:
        with (gzip.open(path, "rb") if gz else open(path, "rb")) as handle:
            dims = _read_header(path, handle)
            expected, header = math.prod(dims), 4 + 4 * len(dims)
            if not gz:  # a plain file's size says it all before reading
                _check_length(path, dims, os.fstat(handle.fileno()).st_size - header)
            # the bytes read, then torch's copy of them
            check_memory(f"{path}: its header's {dims}", 2 * expected, "the file is damaged, or too large for "
                         "this machine", DataError)
            raw = handle.read(expected + 1)  # one byte more than promised shows trailing data
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError; a cut .gz is an EOFError
        raise DataError(f"{path}: cannot be read as {'gzip' if gz else 'a file'}: {exc}") from None
    _check_length(path, dims, len(raw), exact=not gz)
    import torch  # here: image files are read (predict's, the folder dataset's) without importing torch

    # frombuffer views the immutable bytes; copy so torch owns a writable array
    return torch.from_numpy(np.frombuffer(raw, dtype=np.uint8).reshape(dims).copy())


def _read_header(path: Path, handle: Any) -> tuple[int, ...]:
    """The dims after the IDX magic: two zero bytes, 0x08 (unsigned bytes), the number of dims."""
    magic = handle.read(4)
    if len(magic) < 4:
        raise DataError(f"{path}: truncated: {len(magic)} bytes, too short for the 4-byte IDX magic")
    if magic[:3] != b"\x00\x00\x08":
        raise DataError(f"{path}: not an IDX file of unsigned bytes: magic 0x{magic.hex()}; valid: {_VALID_MAGIC}")
    ndim = magic[3]
    if ndim not in (1, 3):
        raise DataError(f"{path}: {ndim} dims (magic 0x{magic.hex()}); valid: {_VALID_MAGIC}")
    raw = handle.read(4 * ndim)
    if len(raw) < 4 * ndim:
        raise DataError(f"{path}: truncated: {4 + len(raw)} bytes, too short for its {4 + 4 * ndim}-byte header")
    dims = struct.unpack(f">{ndim}i", raw)  # big-endian int32 sizes
    if min(dims) < 0:
        raise DataError(f"{path}: its header gives negative sizes {dims}; the file is damaged")
    return dims


def _check_length(path: Path, dims: tuple[int, ...], found: int, exact: bool = True) -> None:
    """`found` bytes of data against the header's promise (exact=False: found is at most promise + 1)."""
    expected = math.prod(dims)
    if found < expected:
        raise DataError(f"{path}: truncated: the header promises {dims} = {expected:,} bytes of data, "
                        f"found {found:,}")
    if found > expected:
        more = f"{found - expected} bytes" if exact else "bytes"
        raise DataError(f"{path}: {more} more than its header's {dims} = {expected:,} bytes of data")
