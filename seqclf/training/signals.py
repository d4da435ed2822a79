"""Stopping a run cleanly on SIGINT/SIGTERM."""

from __future__ import annotations

import signal
import threading
from typing import Any


class GracefulStop:
    """First SIGINT/SIGTERM: finish the step, save, stop. Second SIGINT: abort at once.

    `should_stop()` is polled after every optimizer step; tests pass a subclass that
    asks to stop after a chosen number of steps.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def should_stop(self) -> bool:
        return self.signum is not None

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: atomic writes leave disk intact
        self.signum = signum

    def __enter__(self) -> "GracefulStop":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
