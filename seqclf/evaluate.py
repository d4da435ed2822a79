"""Scoring a model on a split: loss, accuracy, per-class accuracy, confusion matrix."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from seqclf.data import Split

EVAL_BATCH_SIZE = 1024  # fixed, so train's final test score and `seqclf eval` compute identically


@torch.no_grad()
def score(model: nn.Module, split: Split, num_classes: int, autocast: Any = None,
          reduce: Callable[..., None] | None = None) -> dict[str, Any]:
    """Counts over the whole split; the loss is summed in float64 so batch order barely matters.

    `reduce(loss_sum, confusion)` sums both over torchrun's ranks in place, each rank having scored
    its own share of the split: every rank then gets the figures of the whole split.
    """
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=split.y.device)
    confusion = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=split.y.device)
    for start in range(0, len(split), EVAL_BATCH_SIZE):
        x = split.x[start:start + EVAL_BATCH_SIZE]  # (B, T, F)
        y = split.y[start:start + EVAL_BATCH_SIZE]  # (B,)
        with autocast if autocast is not None else _null():
            logits = model(x)  # (B, num_classes)
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum").double()
        confusion += torch.bincount(y * num_classes + logits.argmax(1), minlength=num_classes * num_classes)
    model.train(was_training)
    if reduce is not None:
        reduce(loss_sum, confusion)
    return summarize(loss_sum, confusion.view(num_classes, num_classes))


def summarize(loss_sum: torch.Tensor, confusion: torch.Tensor) -> dict[str, Any]:
    """Metrics from a summed loss and a confusion matrix (rows = true class): exact counts."""
    n = int(confusion.sum())
    per_class_total = confusion.sum(1)  # (C,) examples of each true class
    return {
        "accuracy": int(confusion.diag().sum()) / max(n, 1),
        "loss": float(loss_sum) / max(n, 1),
        "n": n,
        # null for a class with no examples in the split (0/0), not a misleading 0.0
        "per_class_accuracy": [int(hit) / int(total) if total else None
                               for hit, total in zip(confusion.diag(), per_class_total)],
        "confusion_matrix": confusion.tolist(),
    }


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


# Keys `seqclf eval --set` may change: where the data is and how to compute, never what is scored.
EVAL_KEYS = {"data.root", "data.download", "data.max_test", "model.impl", "train.device", "train.num_threads",
             "train.precision"}


def evaluate_checkpoint(path: str | Path, overrides: list[str] | tuple[str, ...] = (),
                        split: str = "test") -> dict[str, Any]:
    """Score a checkpoint on its own data (same view, permutation and normalization as training)."""
    from seqclf import checkpoint
    from seqclf.config import apply_overrides, config_from_dict, parse_overrides
    from seqclf.data import load_data
    from seqclf.errors import SeqclfError
    from seqclf.model import SequenceClassifier
    from seqclf.runtime import autocast, configure_threads, resolve_device

    if split not in ("test", "val"):
        raise SeqclfError(f"--split {split!r}: choose test or val")
    payload = checkpoint.load(path)
    changes = parse_overrides(overrides)
    refused = sorted({key for key, _ in changes} - EVAL_KEYS)
    if refused:
        raise SeqclfError(f"eval --set: cannot change {', '.join(refused)} (it would change what is scored); "
                          f"eval accepts {', '.join(sorted(EVAL_KEYS))}")
    cfg = config_from_dict(apply_overrides(payload["config"], changes), f"{path} with --set")
    device = resolve_device(cfg.train.device, cfg.train.precision)
    configure_threads(cfg.train.num_threads)
    meta = payload["data"]
    data = load_data(cfg.data, cfg.seed, device, splits=(split,), stats=(meta["mean"], meta["std"]),
                     perm=meta["permutation"])
    check_data_fits(data, meta, cfg.data.root, path)
    model = SequenceClassifier(cfg.model, meta["input_size"], meta["num_classes"]).to(device)
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as exc:
        raise checkpoint.CheckpointError(f"{path}: its weights do not fit the model its config describes "
                                         f"({str(exc).splitlines()[0]})") from None
    result = score(model, getattr(data, split), meta["num_classes"], autocast(cfg, device))
    return {"checkpoint": str(path), "split": split, **result}


def check_data_fits(data: Any, meta: dict[str, Any], root: str, source: str | Path) -> None:
    """The data found under `root` must have the shape the checkpoint's model was trained on."""
    from seqclf.data import DataError

    trained = (meta["seq_len"], meta["input_size"])
    if (data.seq_len, data.input_size) != trained or data.num_classes > meta["num_classes"]:
        raise DataError(f"data.root {root}: its data ({data.seq_len} steps of {data.input_size} features, "
                        f"{data.num_classes} classes) does not fit {source}, trained on {trained[0]} steps of "
                        f"{trained[1]} features and {meta['num_classes']} classes; point data.root at the "
                        f"dataset the run was trained on")
