"""Checkpoints are data, never code: what they hold, atomic saves, safe loads, a format version.

A checkpoint is a dict of tensors and plain Python values only (RNG states as tensors, the
config as nested dicts), so `torch.load(weights_only=True)` reads it with no allow-listing,
and a file crafted to run code when unpickled is refused. It is written atomically
(seqclf.store.files), so a crash, an interrupt or a full disk leaves the previous version intact.

This module alone knows the layout:
    format, version          "seqclf-checkpoint", VERSION
    config                   the resolved config as a nested dict
    model                    the model's state_dict
    data                     DataMeta: what the model was trained on (normalization, view, classes,
                             the data's fingerprint and its training pixels' statistics: each absent
                             before it was added, read as None)
    epoch, history           epochs finished and their metrics.jsonl rows
    state                    last.pt only: the rest of TrainingState.state_dict()
Older versions are migrated on read (`migrate`).
"""

from __future__ import annotations

import io
import math
import pickle
import re
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from seqclf.config import Config, config_from_dict, to_dict
from seqclf.config.limits import check_path
from seqclf.data import pixels
from seqclf.data.datasets import class_names
from seqclf.errors import SeqclfError, preview
from seqclf.store.files import atomic_write

FORMAT = "seqclf-checkpoint"
VERSION = 2  # 2: data gains height, width and class_names (version 1 files are migrated on read)
# Earlier releases have known ways past weights_only (CVE-2025-32434 before 2.6, CVE-2026-24747 before 2.10).
SAFE_TORCH = (2, 10)
TOP_KEYS = ("model", "epoch", "history")  # of TrainingState.state_dict(), kept at the top level; the rest is `state`


class CheckpointError(SeqclfError):
    pass


@dataclass(frozen=True)
class DataMeta:
    """What a model was trained on: enough to feed it new images exactly as training did."""

    mean: float  # x = (pixel / 255 - mean) / std
    std: float
    permutation: torch.Tensor | None  # (H*W,) int64 for sequence=permuted_pixels, else None
    input_size: int  # F: features per step
    seq_len: int  # T: steps
    num_classes: int
    height: int  # H, W: the images' size before the sequence view
    width: int
    class_names: tuple[str, ...]  # the name of each label
    # Data.fingerprint: split sizes and a digest of the data files (None in checkpoints written before it)
    fingerprint: dict[str, Any] | None = None
    # seqclf.data.pixels.stats of the training images, for eval and predict to compare their data with
    # (None in checkpoints written before it)
    pixels: dict[str, float] | None = None

    @classmethod
    def of(cls, data: Any) -> DataMeta:
        """From a loaded seqclf.data.datasets.Data."""
        return cls(float(data.mean), float(data.std), data.permutation, data.input_size, data.seq_len,
                   data.num_classes, data.height, data.width, tuple(data.class_names), data.fingerprint,
                   data.pixels.get("train"))

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "class_names": list(self.class_names)}

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str | Path) -> DataMeta:
        """Checked field by field: a damaged or foreign entry is a CheckpointError, never a crash later."""
        def bad(key: str, expected: str) -> CheckpointError:
            return CheckpointError(f"{source}: damaged checkpoint: data.{key} should be {expected}, got "
                                   f"{type(raw.get(key)).__name__} {preview(raw.get(key), 40)}")

        values: dict[str, Any] = {}
        for key in ("mean", "std"):
            value = raw.get(key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise bad(key, "a finite number")
            values[key] = float(value)
        if values["std"] <= 0:
            raise bad("std", "positive")
        for key in ("input_size", "seq_len", "num_classes", "height", "width"):
            value = raw.get(key)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= 2**31:
                raise bad(key, "a positive integer")
            values[key] = value
        perm = raw.get("permutation")
        if perm is not None and not (isinstance(perm, torch.Tensor) and perm.dim() == 1
                                     and len(perm) == values["height"] * values["width"]):
            raise bad("permutation", f"null or a tensor of {values['height'] * values['width']} indices")
        names = raw.get("class_names")
        if not isinstance(names, (list, tuple)) or len(names) != values["num_classes"] \
                or not all(isinstance(n, str) for n in names):
            raise bad("class_names", f"a list of {values['num_classes']} names")
        fingerprint = raw.get("fingerprint")
        if fingerprint is not None and not (isinstance(fingerprint, dict) and all(
                isinstance(k, str) and isinstance(v, (int, str)) for k, v in fingerprint.items())):
            raise bad("fingerprint", "null or a dict of split sizes and a digest")
        stats = raw.get("pixels")
        if stats is not None and not pixels.well_formed(stats):
            raise bad("pixels", f"null or a dict of {', '.join(pixels.KEYS)}, each from 0 to 1")
        return cls(permutation=perm, class_names=tuple(names), fingerprint=fingerprint, pixels=stats, **values)


def migrate(payload: dict[str, Any], source: str | Path) -> dict[str, Any]:
    """A payload of any supported version in this version's layout (the file is not rewritten)."""
    if payload["version"] < 2:  # version 1 had no image size or class names: derive them as training would
        data = dict(payload["data"])
        seq_len, features = data.get("seq_len"), data.get("input_size")
        sequence = (payload["config"].get("data") or {}).get("sequence", "rows")
        if isinstance(seq_len, int) and isinstance(features, int):
            side = math.isqrt(seq_len)
            data.setdefault("height", {"rows": seq_len, "columns": features}.get(sequence, side))
            data.setdefault("width", {"rows": features, "columns": seq_len}.get(sequence, side))
        if isinstance(data.get("num_classes"), int):
            name = (payload["config"].get("data") or {}).get("name", "idx")
            data.setdefault("class_names", class_names(str(name), data["num_classes"]))
        payload = {**payload, "data": data, "version": 2}
    return payload


@dataclass
class Checkpoint:
    """A checkpoint's contents, typed (see the module's docstring for the layout)."""

    config: Config
    data: DataMeta
    model: dict[str, torch.Tensor]  # the state_dict
    epoch: int
    history: list[dict[str, Any]]
    state: dict[str, Any] | None  # last.pt: the rest of TrainingState.state_dict(); None for best.pt
    path: Path

    def training_state(self) -> dict[str, Any]:
        """What TrainingState.load_state_dict() takes (last.pt only)."""
        if self.state is None:
            raise CheckpointError(f"{self.path}: holds no training state to resume from")
        return {"model": self.model, "epoch": self.epoch, "history": self.history, **self.state}


def pack(cfg: Config, data: DataMeta, state: dict[str, Any], with_state: bool) -> dict[str, Any]:
    """The payload of best.pt (weights, config, data, progress) or last.pt (also the training state)."""
    payload = {"config": to_dict(cfg), "data": data.to_dict(), **{key: state[key] for key in TOP_KEYS}}
    if with_state:
        payload["state"] = {key: value for key, value in state.items() if key not in TOP_KEYS}
    return payload


def read(path: str | Path) -> Checkpoint:
    """load() and check every part: the config validates, the data record is well formed."""
    payload = load(path)
    try:
        cfg = config_from_dict(payload["config"], f"{path} (its stored config)")
    except SeqclfError as exc:
        raise CheckpointError(f"{path}: damaged checkpoint: {exc}") from None
    epoch, history, state = payload.get("epoch", 0), payload.get("history", []), payload.get("state")
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0 or not isinstance(history, list) \
            or (state is not None and not isinstance(state, dict)):
        raise CheckpointError(f"{path}: damaged checkpoint: its epoch, history or state entry is malformed")
    return Checkpoint(cfg, DataMeta.from_dict(payload["data"], path), payload["model"], epoch, history, state,
                      Path(path))


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
    check_path("checkpoint", path)
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
    if not all(isinstance(v, torch.Tensor) for v in payload["model"].values()):
        raise CheckpointError(f"{path}: incomplete seqclf checkpoint (its `model` entry is malformed)")
    return migrate(payload, path)
