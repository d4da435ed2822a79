"""Where and how a run computes: device, threads, seeds, optimizer, schedule, precision, signals.

Shared by training, evaluation and the benchmark; nothing here knows about run directories.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import threading
from typing import Any

import numpy as np
import torch

from seqclf.config import TrainConfig
from seqclf.errors import SeqclfError

PER_BATCH_SCHEDULERS = {"cosine", "onecycle"}


def resolve_device(name: str, precision: str = "fp32") -> torch.device:
    """The torch device `train.device` names, checked to exist (and to run `train.precision`)."""
    device = _device(name)
    if precision == "fp16" and device.type != "cuda":
        raise SeqclfError(f"train.precision: fp16 runs on CUDA only, and train.device={name} resolved to "
                          f"{device}; use train.precision=bf16 or fp32")
    return device


def _device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= count:
            raise SeqclfError(f"train.device: {name!r} is not available here ({count} CUDA device(s) found); "
                              f"use train.device=cpu or auto")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise SeqclfError("train.device: 'mps' is not available here; use train.device=cpu or auto")
    return torch.device(name)


def default_threads(share: int = 1) -> int:
    """This process's share of the cores it may run on (taskset/cgroup affinity where known).

    torch's own default is every core; under torchrun each of `share` local ranks gets its
    part so that ranks do not oversubscribe the machine.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, share))


def configure_threads(num_threads: int, share: int = 1) -> int:
    threads = num_threads or default_threads(share)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


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


class GracefulStop:
    """First SIGINT/SIGTERM: finish the step, save, stop. Second SIGINT: abort at once.

    The handlers are in place while it is entered (`with stop:`, in the main thread; nested blocks
    keep the outermost's). `should_stop()` is polled after every optimizer step (every 25 under
    torchrun, where the ranks decide together) and once after each epoch's validation and save;
    tests pass a subclass (tests/stops.py) that asks to stop at chosen polls.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}
        self._depth = 0  # nested `with` blocks (a search's, then each trial's loop): the outermost owns the handlers

    def should_stop(self) -> bool:
        return self.signum is not None

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: atomic writes leave disk intact
        self.signum = signum

    def __enter__(self) -> "GracefulStop":
        if not self._depth and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        self._depth += 1
        return self

    def __exit__(self, *exc: Any) -> None:
        self._depth -= 1
        if not self._depth:  # the outermost block: what was there before it
            for sig, handler in self._previous.items():
                signal.signal(sig, handler)
            self._previous.clear()


def autocast(t: TrainConfig, device: torch.device) -> Any:
    """The autocast context for train.precision (a no-op for fp32)."""
    if t.precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if t.precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)
