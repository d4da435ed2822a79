"""StopAt: a GracefulStop that asks to stop at chosen calls (its own module: it needs torch, and conftest.py
is imported by the process that only starts the pytest-xdist workers too)."""

from __future__ import annotations

import signal
from typing import Any

from seqclf.training.signals import GracefulStop


class StopAt(GracefulStop):
    """Asks to stop at the given calls of should_stop(), as if a signal had arrived just before.

    should_stop() is polled after every optimizer step and once after each epoch's validation
    and save, so with 10 steps an epoch: call 3 = epoch 1 step 3, call 10 = its last step
    (before validation), call 11 = between epochs 1 and 2, call 22 = after the last epoch.
    `on_call` runs extra test actions at chosen calls.
    """

    def __init__(self, *calls: int, signum: int = signal.SIGINT, on_call: dict[int, Any] | None = None) -> None:
        super().__init__()
        self.calls, self.count, self.stop_signum, self.on_call = set(calls), 0, signum, on_call or {}

    def should_stop(self) -> bool:
        self.count += 1
        if self.count in self.on_call:
            self.on_call[self.count]()
        if self.count in self.calls:
            self.signum = self.stop_signum
        return super().should_stop()
