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
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable

import torch

from seqclf.errors import SeqclfError, TrainingError

FORMAT = "seqclf-checkpoint"
VERSION = 1
# Earlier releases have known ways past weights_only (CVE-2025-32434 before 2.6, CVE-2026-24747 before 2.10).
SAFE_TORCH = (2, 10)
DATA_KEYS = ("mean", "std", "permutation", "input_size", "seq_len", "num_classes")


class CheckpointError(SeqclfError):
    pass


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


def write_json(path: str | Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2) + "\n")


def save(path: str | Path, payload: dict[str, Any]) -> None:
    """Save a checkpoint dict atomically, stamped with the format and version."""
    payload = {"format": FORMAT, "version": VERSION, **payload}
    buffer = io.BytesIO()
    torch.save(payload, buffer)  # serialize fully before touching the disk
    atomic_write(path, lambda handle: handle.write(buffer.getbuffer()))


def require_safe_torch(version: str | None = None) -> None:
    """Refuse to unpickle anything with a torch whose weights_only loading is known to be bypassable."""
    version = version or torch.__version__
    found = tuple(int(part) for part in re.findall(r"\d+", version)[:2])
    if found < SAFE_TORCH:
        raise CheckpointError(f"torch {version} is too old to load checkpoints safely (weights_only has known "
                              f"bypasses before {'.'.join(map(str, SAFE_TORCH))}: CVE-2025-32434, CVE-2026-24747); "
                              f"upgrade with: pip install 'torch>={'.'.join(map(str, SAFE_TORCH))}'")


def load(path: str | Path) -> dict[str, Any]:
    """Load a seqclf checkpoint with weights_only=True semantics; every failure is a CheckpointError.

    There is no fallback to unsafe loading: a file the safe unpickler rejects is never loaded.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint. A run directory holds best.pt and last.pt "
                              f"(e.g. runs/<run>/best.pt); `seqclf runs` lists the runs.")
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder; give a checkpoint file such as {path / 'best.pt'}")
    require_safe_torch()
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols of files it then refuses
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except PermissionError as exc:
        raise CheckpointError(f"{path}: cannot be read ({exc.strerror})") from None
    except Exception as exc:  # the safe unpickler raises many types on malformed files
        text = str(exc)
        code = re.search(r"GLOBAL (\S+)", text) if isinstance(exc, pickle.UnpicklingError) else None
        if code:
            raise CheckpointError(
                f"{path}: refused. It asks for the Python object `{code.group(1)}` when loaded, which could run "
                f"code; seqclf checkpoints hold only tensors and plain data, so it was not loaded and nothing in "
                f"it ran. Only load checkpoints written by seqclf.") from None
        detail = re.search(r"Unsupported [^\n]*", text)  # torch's long advice around it is not for users
        reason = detail.group(0) if detail else ": ".join([type(exc).__name__, *text.strip().splitlines()[:1]])
        raise CheckpointError(f"{path}: not a readable seqclf checkpoint (corrupt, truncated or not written by "
                              f"seqclf: {reason[:200]}); it was not loaded.") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a seqclf checkpoint (a seqclf checkpoint is best.pt or last.pt "
                              f"in a run directory written by `seqclf train`)")
    version = payload.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise CheckpointError(f"{path}: not a seqclf checkpoint (format version {version!r} is not a number)")
    if version > VERSION:
        raise CheckpointError(f"{path}: written in checkpoint format version {version}, newer than this seqclf "
                              f"reads (up to {VERSION}); upgrade seqclf to load it")
    for key in ("config", "model", "data"):
        if not isinstance(payload.get(key), dict):
            raise CheckpointError(f"{path}: incomplete seqclf checkpoint (no `{key}` entry)")
    missing = [key for key in DATA_KEYS if key not in payload["data"]]
    if missing or not all(isinstance(v, torch.Tensor) for v in payload["model"].values()):
        raise CheckpointError(f"{path}: incomplete seqclf checkpoint (its `data` or `model` entry is malformed)")
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
