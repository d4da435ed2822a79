"""The optimizer and the learning-rate schedule a run's `train` section names."""

from __future__ import annotations

from typing import Any

import torch

from seqclf.config import TrainConfig

PER_BATCH_SCHEDULERS = {"cosine", "onecycle"}


def build_optimizer(t: TrainConfig, params: Any) -> torch.optim.Optimizer:
    # foreach: one call per update op for all tensors instead of a Python loop over them (CUDA's
    # default already); on CPU it computes bit-identical updates, with less per-step overhead
    if t.optimizer == "sgd":
        return torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay, foreach=True)
    kind = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[t.optimizer]
    return kind(params, lr=t.lr, weight_decay=t.weight_decay, foreach=True)


def build_scheduler(t: TrainConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int) -> Any:
    total = t.epochs * steps_per_epoch
    if t.scheduler == "cosine":  # stepped per batch
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    if t.scheduler == "onecycle":  # stepped per batch; lr is the peak
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=t.lr, total_steps=total)
    if t.scheduler == "step":  # stepped per epoch
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=t.step_size, gamma=t.gamma)
    return None
