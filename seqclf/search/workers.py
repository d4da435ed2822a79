"""Worker processes of `seqclf tune`: how many of `--jobs J` fit on one machine, that none outlives the
parent (workers run in their own session, so a signal to the terminal's group does not reach them),
and what a worker says when the study's storage fails under it (a PostgreSQL restart)."""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from seqclf.console import Output
from seqclf.errors import TrainingError, first_line
from seqclf.search.storage import require_optuna, without_password
from seqclf.search.study import Settings

WORKER_MEMORY = 1 << 30  # a worker's share: torch, the data on the device and a trial's model, for MNIST-sized data


def capped_jobs(jobs: int, out: Output) -> int:
    """--jobs, at most one worker per core and per WORKER_MEMORY of available memory; one line when capped."""
    from seqclf.config.limits import available_memory, default_threads, size

    cores, free = default_threads(), available_memory()
    fit = min(cores, max(1, free // WORKER_MEMORY) if free is not None else cores)
    if jobs > fit:
        memory = f", {size(free)} of memory available (about {size(WORKER_MEMORY)} a worker)" if free else ""
        out.warn(f"--jobs {jobs}: running {fit} workers, as this machine has {cores} cores{memory}")
    return min(jobs, fit)


def dies_with(parent: int) -> Any:
    """A worker's pre-exec step: Linux sends it SIGTERM when the parent dies (even by SIGKILL), so no
    worker runs on orphaned in its own session; it saves last.pt and its trial is told failed."""
    def arm() -> None:
        if sys.platform.startswith("linux"):
            import ctypes

            ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
            if os.getppid() != parent:  # the parent died before the call
                os._exit(143)

    return arm


def storage_failure(settings: Settings, exc: BaseException) -> TrainingError | None:
    """The message for an error of the study's storage (a PostgreSQL restart, a lost connection), or None
    for any other error. The running trial is told FAIL now or, the storage still down, by the next run."""
    kinds: list[type] = [require_optuna().exceptions.StorageInternalError]
    try:
        import sqlalchemy.exc

        kinds.append(sqlalchemy.exc.SQLAlchemyError)
    except ImportError:
        pass
    if not isinstance(exc, tuple(kinds)):
        return None
    where = without_password(settings.storage) if settings.storage else "the journal file"
    return TrainingError(f"the study's storage {where} failed ({type(exc).__name__}: {first_line(exc)[:160]}); "
                         f"this worker stopped and its running trial is recorded as failed. Run the same command "
                         f"again to continue the study once the storage is reachable")
