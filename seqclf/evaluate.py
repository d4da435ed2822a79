"""Scoring a model on a split: loss, accuracy, per-class accuracy, confusion matrix."""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from seqclf import checkpoint
from seqclf.config import Config, apply_overrides, config_from_dict, keys_where, parse_overrides, to_dict
from seqclf.data import Split
from seqclf.devices import DtypePolicy, dtype_policy
from seqclf.errors import SeqclfError, TrainingError
from seqclf.model import SequenceClassifier, load_weights
from seqclf.runtime import autocast as precision_context
from seqclf.setup import prepare

EVAL_BATCH_SIZE = 1024  # fixed, so train's final test score and `seqclf eval` compute identically


@torch.no_grad()
def score(model: nn.Module, split: Split, num_classes: int, autocast: Any = None,
          reduce: Callable[..., None] | None = None, policy: DtypePolicy | None = None) -> dict[str, Any]:
    """Counts over the whole split; the loss is summed in float64 so batch order barely matters (on a
    device without float64 each batch's float32 sum is added up on the host, see seqclf.devices).

    `reduce(loss_sum, confusion)` sums both over torchrun's ranks in place, each rank having scored
    its own share of the split: every rank then gets the figures of the whole split. `policy`: the
    device's (seqclf.devices.dtype_policy) unless given.
    """
    was_training = model.training
    model.eval()
    policy = policy or dtype_policy(split.y.device.type)
    loss_sum = torch.zeros((), dtype=torch.float64, device=policy.sums_device(split.y.device))
    losses = []  # no float64 on the device: each batch's loss sum, () float32, added on the host at the end
    confusion = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=split.y.device)
    for start in range(0, len(split), EVAL_BATCH_SIZE):
        x = split.x[start:start + EVAL_BATCH_SIZE]  # (B, T, F)
        y = split.y[start:start + EVAL_BATCH_SIZE]  # (B,)
        with autocast if autocast is not None else contextlib.nullcontext():
            logits = model(x)  # (B, num_classes)
        batch_loss = F.cross_entropy(logits.float(), y, reduction="sum")
        if policy.float64:
            loss_sum += batch_loss.double()
        else:
            losses.append(batch_loss)
        confusion += torch.bincount(y * num_classes + logits.argmax(1), minlength=num_classes * num_classes)
    model.train(was_training)
    if losses:
        loss_sum += sum(torch.stack(losses).tolist())  # Python floats: IEEE double
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


def evaluate_checkpoint(path: str | Path, overrides: list[str] | tuple[str, ...] = (),
                        split: str = "test") -> dict[str, Any]:
    """Score a checkpoint on its own data (same view, permutation and normalization as training)."""
    if split not in ("test", "val"):
        raise SeqclfError(f"--split {split!r}: choose test or val")
    saved = checkpoint.read(path)
    cfg = eval_config(saved.config, overrides, path)
    ready = prepare(cfg, splits=(split,), meta=saved.data, source=path)
    meta = saved.data
    model = SequenceClassifier(ready.cfg.model, meta.input_size, meta.num_classes).to(ready.device)
    load_weights(model, saved.model, str(path))
    result = score(model, getattr(ready.data, split), meta.num_classes, precision_context(cfg.train, ready.device))
    if not math.isfinite(result["loss"]):
        finite = all(bool(torch.isfinite(p).all()) for p in model.parameters())
        raise TrainingError(f"{path}: the {split} loss is {result['loss']}: "
                            + ("the model's outputs overflow on this data" if finite else
                               "its weights hold NaN or infinite values (a diverged run)")
                            + "; no accuracy is reported for it")
    return {"checkpoint": str(path), "split": split, **result, "class_names": list(meta.class_names)}


def eval_config(cfg: Config, overrides: list[str] | tuple[str, ...], source: str | Path) -> Config:
    """A checkpoint's config with eval's `--set` changes: where the data is and how to compute, never what is scored."""
    changes = parse_overrides(overrides)
    allowed = keys_where("eval")
    refused = sorted({key for key, _ in changes} - allowed)
    if refused:
        raise SeqclfError(f"eval --set: cannot change {', '.join(refused)} (it would change what is scored); "
                          f"eval accepts {', '.join(sorted(allowed))}")
    return config_from_dict(apply_overrides(to_dict(cfg), changes), f"{source} with --set")
