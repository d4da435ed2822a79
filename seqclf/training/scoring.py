"""Scoring a model on a split: loss, accuracy, per-class accuracy, confusion matrix.

Training scores its validation and test splits with this, and `seqclf eval` does the same, so the
two compute identically.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from seqclf.data.datasets import Split
from seqclf.training.devices import DtypePolicy, dtype_policy

EVAL_BATCH_SIZE = 1024  # fixed, so train's final test score and `seqclf eval` compute identically


@torch.no_grad()
def score(model: nn.Module, split: Split, num_classes: int, autocast: Any = None,
          reduce: Callable[..., None] | None = None, policy: DtypePolicy | None = None) -> dict[str, Any]:
    """Counts over the whole split; the loss is summed in float64 so batch order barely matters (on a
    device without float64 each batch's float32 sum is added up on the host, see seqclf.training.devices).

    `reduce(loss_sum, confusion)` sums both over torchrun's ranks in place, each rank having scored
    its own share of the split: every rank then gets the figures of the whole split. `policy`: the
    device's (seqclf.training.devices.dtype_policy) unless given.
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
        confusion += confusion_counts(y, logits.argmax(1), num_classes)
    model.train(was_training)
    if losses:
        loss_sum += sum(torch.stack(losses).tolist())  # Python floats: IEEE double
    if reduce is not None:
        reduce(loss_sum, confusion)
    return summarize(loss_sum, confusion.view(num_classes, num_classes))


def confusion_counts(y: torch.Tensor, predicted: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(C*C,) int64: how often each (true, predicted) pair occurs, row-major (rows = true class)."""
    return torch.bincount(y * num_classes + predicted, minlength=num_classes * num_classes)


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
