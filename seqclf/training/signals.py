"""Stopping a run cleanly on SIGINT/SIGTERM."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

from seqclf.errors import Terminated


@contextlib.contextmanager
def sigterm_stops() -> Iterator[None]:
    """Within it SIGTERM raises Terminated (a KeyboardInterrupt) where nothing else handles it: in
    set-up and the final scoring, as Ctrl-C does, so atomic writes remove their temporary file and
    summary.json ends `interrupted`. A GracefulStop entered inside takes SIGTERM over for the epochs;
    a handler already in place (a search's GracefulStop around its trials) is left alone."""
    def terminate(signum: int, frame: Any) -> None:
        raise Terminated()

    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


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

    def __enter__(self) -> GracefulStop:
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
