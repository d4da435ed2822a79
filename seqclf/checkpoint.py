"""Checkpoints are data, never code: atomic saves, safe loads, a format version.

A checkpoint is a dict of tensors and plain Python values only (RNG states as tensors, the
config as nested dicts), so `torch.load(weights_only=True)` reads it with no allow-listing,
and a file crafted to run code when unpickled is refused. Every file seqclf writes goes to
a temporary name in the same folder and is renamed into place, so a crash, an interrupt or
a full disk leaves the previous version intact.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch

from seqclf.errors import SeqclfError

FORMAT = "seqclf-checkpoint"
VERSION = 1


class CheckpointError(SeqclfError):
    pass


def atomic_write(path: str | Path, write: Callable[[Any], None], binary: bool = True) -> None:
    """Write `path` through a temp file in its folder + fsync + rename: all or nothing."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if binary else "w", encoding=None if binary else "utf-8") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:  # also KeyboardInterrupt: never leave a half-written file behind
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda handle: handle.write(text), binary=False)


def write_json(path: str | Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2) + "\n")


def save(path: str | Path, payload: dict[str, Any]) -> None:
    """Save a checkpoint dict atomically, stamped with the format and version."""
    payload = {"format": FORMAT, "version": VERSION, **payload}
    buffer = io.BytesIO()
    torch.save(payload, buffer)  # serialize fully before touching the disk
    atomic_write(path, lambda handle: handle.write(buffer.getbuffer()))


def load(path: str | Path) -> dict[str, Any]:
    """Load a seqclf checkpoint with weights_only=True semantics; every failure is a CheckpointError."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint. A run directory holds best.pt and last.pt "
                              f"(e.g. runs/<run>/best.pt); `seqclf runs` lists the runs.")
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder; give a checkpoint file such as {path / 'best.pt'}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights_only" in str(exc) or "Unsupported global" in str(exc):
            raise CheckpointError(
                f"{path}: refused. It contains Python objects other than tensors and plain data, which "
                f"could run code when loaded; seqclf checkpoints never do, so it was not loaded. Only load "
                f"checkpoints written by seqclf.") from None
        raise CheckpointError(f"{path}: not a readable seqclf checkpoint (corrupt or truncated: {exc})") from None
    except Exception as exc:  # the safe unpickler raises many types on malformed files
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable seqclf checkpoint (corrupt or truncated: {reason})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a seqclf checkpoint (a seqclf checkpoint is best.pt or last.pt "
                              f"in a run directory written by `seqclf train`)")
    version = payload.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise CheckpointError(f"{path}: written in checkpoint format version {version}, newer than this seqclf "
                              f"reads (up to {VERSION}); upgrade seqclf to load it")
    for key in ("config", "model", "data"):
        if key not in payload:
            raise CheckpointError(f"{path}: incomplete seqclf checkpoint (no `{key}` entry)")
    return payload


# ---------------------------------------------------------------- RNG states as tensors


def rng_state() -> dict[str, Any]:
    """Every RNG in use, as tensors and plain values (so it survives weights_only loading)."""
    import random

    import numpy as np

    version, mt, gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": {"version": version, "state": torch.tensor(mt, dtype=torch.int64), "gauss": gauss},
        "numpy": {"name": np_name, "keys": torch.from_numpy(np_keys.astype(np.int64)), "pos": int(np_pos),
                  "has_gauss": int(np_has_gauss), "gauss": float(np_gauss)},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    import random

    import numpy as np

    torch.set_rng_state(state["torch"])
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"].tolist()), py["gauss"]))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
