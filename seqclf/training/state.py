"""What changes as a run trains, as one object with `state_dict()` / `load_state_dict()`.

`TrainingState` holds the model, optimizer, scheduler and shuffling generator, the run-wide
progress (epochs done, best epoch, history, time) and the `Cursor` of the epoch in progress
(its data order, the step reached, its partial metric sums). Its state_dict is everything
`last.pt` needs to continue the run to the bit; checkpoint.py decides how that is laid out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from seqclf.training import rng
from seqclf.training.devices import DtypePolicy, dtype_policy

PER_STEP = ("loss", "correct", "grad_norm", "clipped", "skipped")  # what each step adds (add_step)
SUMS = (*PER_STEP, "steps")  # the epoch's running totals


def zero_sums(device: torch.device, policy: DtypePolicy | None = None) -> dict[str, torch.Tensor]:
    """The epoch's metric sums in float64: on the device, so that a step needs no host sync, or on the
    host for a device without float64 (seqclf.training.devices.dtype_policy)."""
    where = (policy or dtype_policy(device.type)).sums_device(device)
    return {name: torch.zeros((), dtype=torch.float64, device=where) for name in SUMS}


def stalled(epoch: int, best_epoch: int, patience: int) -> bool:
    """train.patience > 0 epochs have ended since the best one (after `epoch` epochs, the best `best_epoch`)."""
    return patience > 0 and best_epoch > 0 and epoch - best_epoch >= patience


@dataclass
class Cursor:
    """Where the epoch in progress is; `order is None` between epochs."""

    order: torch.Tensor | None = None  # (n_train,) the epoch's permutation of the training examples
    step: int = 0  # optimizer steps done in this epoch
    sums: dict[str, torch.Tensor] = field(default_factory=dict)  # partial train metrics of the epoch
    elapsed: float = 0.0  # training seconds already spent in this epoch
    lr: float = 0.0  # the rate when the epoch began (metrics.jsonl's lr), even if resumed mid-epoch
    pending: list[torch.Tensor] = field(default_factory=list)  # no float64 on the device: steps not yet in sums


class TrainingState:
    """Model, optimizer, scheduler, shuffling and progress: all a run needs to continue exactly."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                 shuffle: torch.Generator, device: torch.device, scaler: torch.amp.GradScaler | None = None,
                 policy: DtypePolicy | None = None) -> None:
        self.model, self.optimizer, self.scheduler, self.shuffle = model, optimizer, scheduler, shuffle
        self.device = device
        # fp16's loss scale and its growth count (a resumed run continues with them); disabled otherwise
        self.scaler = scaler or torch.amp.GradScaler(device.type, enabled=False)
        self.policy = policy or dtype_policy(device.type)
        self.epoch = 0  # epochs finished
        self.best_accuracy = -1.0
        self.best_epoch = 0  # 0: no epoch finished yet
        self.history: list[dict[str, Any]] = []  # metrics.jsonl's rows
        self.total_seconds = 0.0  # training time of the finished epochs
        self.cursor = Cursor(sums=zero_sums(device, self.policy))

    def begin_epoch(self, n_train: int) -> None:
        """Draw the epoch's order from the shuffling generator and zero its sums."""
        self.cursor = Cursor(order=torch.randperm(n_train, generator=self.shuffle),
                             sums=zero_sums(self.device, self.policy), lr=self.optimizer.param_groups[0]["lr"])

    def add_step(self, loss_sum: torch.Tensor, correct: torch.Tensor, norm: torch.Tensor, clip: float) -> None:
        """One optimizer step's metrics into the epoch's sums, with no host sync.

        loss_sum () the batch's summed loss (policy.step_dtype), correct () int64, norm () the gradient
        norm before clipping: non-finite when fp16's GradScaler skipped the step, which then counts as
        skipped and adds nothing to grad_norm or clipped.
        """
        finite = torch.isfinite(norm)
        values = (loss_sum, correct, torch.where(finite, norm, 0.0), finite & (norm > clip), ~finite)  # PER_STEP
        sums = self.cursor.sums
        if self.policy.float64:
            for name, value in zip(PER_STEP, values):
                sums[name] += value.double()
        else:  # (5,) float32 on the device; exact per step (counts are at most the batch size)
            self.cursor.pending.append(torch.stack([value.float() for value in values]))
        sums["steps"] += 1

    def settle(self) -> None:
        """Add the pending steps into the host's sums (a device without float64; a host sync)."""
        pending = self.cursor.pending
        if pending:
            for name, column in zip(PER_STEP, zip(*torch.stack(pending).tolist())):
                self.cursor.sums[name] += sum(column)  # Python floats: IEEE double, no float64 tensor
            pending.clear()

    def end_epoch(self, row: dict[str, Any]) -> bool:
        """Record a finished epoch's metrics row; returns whether its validation accuracy is the best yet."""
        self.epoch += 1
        self.history.append(row)
        self.total_seconds += self.cursor.elapsed
        self.cursor = Cursor(sums=zero_sums(self.device, self.policy))
        improved = row["val_accuracy"] > self.best_accuracy
        if improved:
            self.best_accuracy, self.best_epoch = row["val_accuracy"], self.epoch
        return improved

    def stalled(self, patience: int) -> bool:
        """Early stopping: no better validation accuracy in the last `patience` epochs (stalled())."""
        return stalled(self.epoch, self.best_epoch, patience)

    def state_dict(self) -> dict[str, Any]:
        """Tensors and plain values only (weights_only-safe), RNG states included."""
        self.settle()
        c = self.cursor
        return {
            "model": self.model.state_dict(), "epoch": self.epoch, "history": list(self.history),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "step": c.step, "order": c.order, "sums": {k: v.cpu() for k, v in c.sums.items()},
            "elapsed": c.elapsed, "lr": c.lr, "best_accuracy": self.best_accuracy, "best_epoch": self.best_epoch,
            "total_seconds": self.total_seconds, "rng": rng.rng_state(self.device),
            "shuffle": self.shuffle.get_state(), "scaler": self.scaler.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore exactly what state_dict() returned (also the global RNGs)."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.shuffle.set_state(state["shuffle"])
        rng.set_rng_state(state["rng"], self.device)
        if state.get("scaler") and self.scaler.is_enabled():  # absent before format 2's scaler; {} when disabled
            self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.history = int(state["epoch"]), list(state["history"])
        self.best_accuracy, self.best_epoch = state["best_accuracy"], state["best_epoch"]
        self.total_seconds = state["total_seconds"]
        sums = zero_sums(self.device, self.policy)  # a sum that older files lack (skipped) starts at 0
        sums.update({k: v.to(sums[k].device) for k, v in state["sums"].items() if k in sums})
        self.cursor = Cursor(order=state["order"], step=state["step"], elapsed=state["elapsed"], lr=state["lr"],
                             sums=sums)
