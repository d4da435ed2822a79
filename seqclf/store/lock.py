"""One process at a time in a run directory: an OS file lock that dies with its holder.

`train` and `--resume` hold an exclusive `fcntl.flock` on RUN_DIR/.lock from the moment the
directory is made (or the resume starts) to the end; the file holds the holder's PID. The OS
drops the lock when the process ends in any way (SIGKILL included), so a lock is never stale
and is never removed by hand. A second process is refused with the holder's PID; readers such
as `seqclf runs` ask `holder()` whether a "running" run still has a live process (it takes a
shared lock for an instant, which `acquire` waits out rather than refuse).
Torch-free. Where fcntl does not exist (Windows) runs are not locked.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

from seqclf.errors import SeqclfError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK = ".lock"
PROBE_WAIT = 1.0  # seconds acquire() waits out holder()'s shared locks (each lasts microseconds)
_held: dict[Path, int] = {}  # run directory -> the open descriptor that holds its lock


class RunLocked(SeqclfError):
    """Another live process trains in this run directory (exit 2)."""


def acquire(run_dir: str | Path) -> None:
    """Lock `run_dir` for this process (a no-op if it already holds it); RunLocked names the holder."""
    run_dir = Path(run_dir).resolve()
    if fcntl is None or run_dir in _held:
        return
    try:
        fd = os.open(run_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise SeqclfError(f"{run_dir}: cannot create its lock file {LOCK} ({exc.strerror or exc}); "
                          f"the run directory must be writable") from None
    try:
        _lock(fd)
    except OSError as exc:
        os.close(fd)
        if not isinstance(exc, BlockingIOError):  # a filesystem without locks (ENOLCK): run unlocked
            return
        pid = _read_pid(run_dir)
        raise RunLocked(f"{run_dir}: in use by process {pid if pid else '(unknown PID)'}, which is training in it "
                        f"now; two processes writing one run would mix their epochs. Wait for it to end, or stop "
                        f"it (kill -INT {pid or 'PID'}: it saves last.pt) and then resume.") from None
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
    except OSError:  # a full disk: the lock holds all the same, only its PID goes unnamed
        pass
    _held[run_dir] = fd


def _lock(fd: int) -> None:
    """The exclusive lock on `fd`; BlockingIOError while a process that trains holds it.

    holder() takes a shared lock for an instant to look: while only such probes hold the file, the
    attempt is repeated, for up to PROBE_WAIT seconds, instead of refused.
    """
    deadline = time.monotonic() + PROBE_WAIT
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if not _only_probes(fd) or time.monotonic() > deadline:
                raise
        time.sleep(0.005)


def _only_probes(fd: int) -> bool:
    """Whether no exclusive lock is held on the file: a shared one can be had (and is dropped at once)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    fcntl.flock(fd, fcntl.LOCK_UN)
    return True


def release(run_dir: str | Path) -> None:
    """Drop this process's lock on `run_dir` (the .lock file stays: removing it would race)."""
    fd = _held.pop(Path(run_dir).resolve(), None)
    if fd is not None:
        os.close(fd)


def holder(run_dir: str | Path) -> int | None:
    """The PID of the live process that holds `run_dir`'s lock (0 if unknown), or None when free."""
    run_dir = Path(run_dir).resolve()
    if fcntl is None or not (run_dir / LOCK).exists():
        return None
    if run_dir in _held:
        return os.getpid()
    try:
        fd = os.open(run_dir / LOCK, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _read_pid(run_dir) or 0
    except OSError:  # a filesystem without locks: nobody can be seen holding one
        return None
    finally:
        os.close(fd)  # also drops the shared lock if it was taken
    return None


def _read_pid(run_dir: Path) -> int | None:
    try:
        text = (run_dir / LOCK).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


@contextlib.contextmanager
def session() -> Iterator[None]:
    """Release, at the end, every lock this process took inside (train/resume hold theirs this long)."""
    before = set(_held)
    try:
        yield
    finally:
        for run_dir in set(_held) - before:
            release(run_dir)
