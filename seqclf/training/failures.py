"""How training ends when it does not finish: one exception type per way, each building its message
(what happened, where, what to do) from its fields, so that the loop raises them in one line."""

from __future__ import annotations

import signal
from pathlib import Path

import torch

from seqclf.config import TrainConfig
from seqclf.errors import Interrupted, SeqclfError, TrainingError, first_line
from seqclf.store.rundir import RunDir


class NonFinite(TrainingError):
    """A non-finite loss (checked every few steps) or non-finite weights (checked before each save)."""

    def __init__(self, loss: float | None, epoch: int, step: int, run_dir: RunDir | Path, train: TrainConfig) -> None:
        """`loss`: the non-finite loss, or None when the loss was finite and the weights were not;
        `epoch`: the epoch in progress, from 1; `step`: the steps done in it."""
        self.loss, self.epoch, self.step, self.run_dir = loss, epoch, step, run_dir
        what = "weights" if loss is None else f"loss ({loss})"
        clipping = ", gradient clipping (train.grad_clip=1.0)" if train.grad_clip == 0 else \
            f", a tighter train.grad_clip (now {train.grad_clip})"
        super().__init__(
            f"non-finite {what} at epoch {epoch}, step {step}: training stopped and no checkpoint was "
            f"overwritten ({run_dir} keeps the last good ones). Remedies: a lower train.lr (now {train.lr})"
            f"{clipping}{'' if train.precision == 'fp32' else ', or train.precision=fp32'}.")


class RunInterrupted(Interrupted):
    """A run stopped on SIGINT/SIGTERM after saving last.pt; `seqclf train --resume` continues it."""

    def __init__(self, signum: int, run_dir: RunDir, epochs_done: int, step: int | None) -> None:
        """`step`: the steps done in the epoch in progress, or None when it stopped between epochs."""
        self.run_dir, self.epochs_done, self.step = run_dir, epochs_done, step
        where = f"after epoch {epochs_done}" if step is None else f"at epoch {epochs_done + 1}, step {step}"
        super().__init__(f"{signal.Signals(signum).name}: stopped {where}; saved {run_dir.last}. "
                         f"Continue with: seqclf train --resume {run_dir}", signum)


def stopped_early(epoch: int, train: TrainConfig, best_epoch: int) -> str:
    """Why a run ended before train.epochs: train.patience epochs without a better validation accuracy."""
    return (f"stopped early after epoch {epoch} of {train.epochs}: no better validation accuracy than epoch "
            f"{best_epoch}'s in {epoch - best_epoch} epochs (train.patience={train.patience})")


class OutOfMemory(TrainingError):
    """The device ran out of memory (exit 1): not bad input; the message gives a batch size to try
    instead, in a new run (the batch size of a run cannot change on resume)."""

    def __init__(self, exc: BaseException, device: torch.device, batch_size: int, doing: str, config: str,
                 init_from: str | None = None) -> None:
        """`doing`: what ran out, e.g. "training RUN_DIR"; `config`: the config file the suggested command
        trains with; `init_from`: a checkpoint the suggested run starts from."""
        self.device, self.batch_size = device, batch_size
        super().__init__(
            f"out of memory on {device} while {doing} with train.batch_size={batch_size} ({first_line(exc)[:200]}). "
            f"Free the device's memory (other processes on it) or train with half the batch: seqclf train --config "
            f"{config} --set train.batch_size={max(1, batch_size // 2)}"
            f"{f' --init-from {init_from}' if init_from else ''}")


class LostContact(SeqclfError):
    """Under torchrun: a collective failed because another rank went away (exit 1; that rank's own
    message says why)."""

    exit_code = 1

    def __init__(self, rank: int, exc: BaseException) -> None:
        self.rank = rank
        super().__init__(f"rank {rank}: lost contact with the other ranks: one of them failed or was stopped "
                         f"(its own message and torchrun's summary say which and why). Detail: "
                         f"{first_line(exc)[:300]}")
