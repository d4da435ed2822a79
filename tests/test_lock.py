"""One process at a time in a run directory (seqclf/store/lock.py): an OS lock that dies with its holder."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import (
    assert_stopped_by_a_signal_and_resumable,
    listed_status,
    make_dataset,
    posix_only,
    process,
    seqclf_env,
    write_config,
)
from typer.testing import CliRunner

from seqclf.cli.app import app
from seqclf.errors import SeqclfError
from seqclf.store import lock as runlock

pytestmark = pytest.mark.skipif(runlock.fcntl is None, reason="no fcntl (Windows): runs are not locked")
runner = CliRunner()


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("lock") / "data", n_train=300, n_test=100)


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


@process
@posix_only
def test_a_run_directory_is_locked_while_a_process_trains_in_it_until_a_sigterm_stops_it(tmp_path: Path,
                                                                                         data_root: Path) -> None:
    """A real process trains: a resume or a restart of its run is refused, naming it; `runs` lists it running.
    Then a real SIGTERM to the process the message names: exit 143, last.pt saved, and the run resumes.
    (That the lock dies with a SIGKILLed process: test_recovery.py's kills, whose runs resume and restart.)"""
    cfg = write_config(tmp_path, data_root, "long", epochs=100000)
    run_dir = tmp_path / "runs" / "long"
    proc = subprocess.Popen([sys.executable, "-m", "seqclf", "train", "--config", str(cfg)], env=seqclf_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (run_dir / "metrics.jsonl").exists():  # an epoch is saved: the loop has its handlers
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the run never finished an epoch"
            time.sleep(0.05)
        holders = set()
        for args in (["train", "--resume", str(run_dir)], ["train", "--config", str(cfg)]):
            code, output = invoke(*args)
            named = re.search(r"in use by process (\d+)", " ".join(output.split()))
            assert code == 2 and named, output
            holders.add(int(named.group(1)))
        assert listed_status(run_dir) == "running"
        assert holders == {proc.pid}
        os.kill(proc.pid, signal.SIGTERM)  # the process the message names
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert listed_status(run_dir) == "interrupted"
    assert_stopped_by_a_signal_and_resumable(run_dir, proc.returncode, 143, stderr)


def test_a_resume_starting_while_runs_probes_the_lock_is_not_refused(tmp_path: Path) -> None:
    """`seqclf runs` asks runlock.holder() about a run by taking a shared lock for an instant: a resume's
    exclusive lock attempt at that instant waits the probe out; a process that trains in the run is still refused."""
    import fcntl
    import threading

    from seqclf.store import lock as runlock

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / runlock.LOCK).write_text("")
    probe = os.open(run_dir / runlock.LOCK, os.O_RDONLY)
    fcntl.flock(probe, fcntl.LOCK_SH | fcntl.LOCK_NB)  # holder() between its flock and its close
    ends = threading.Timer(0.2, os.close, [probe])  # ... drawn out to 0.2 s
    ends.start()
    try:
        runlock.acquire(run_dir)
        assert runlock.holder(run_dir) == os.getpid()
        assert (run_dir / runlock.LOCK).read_text() == f"{os.getpid()}\n"
    finally:
        ends.join()
        runlock.release(run_dir)
    trainer = os.open(run_dir / runlock.LOCK, os.O_RDWR)  # an exclusive holder, as train takes it
    try:
        fcntl.flock(trainer, fcntl.LOCK_EX | fcntl.LOCK_NB)
        started = time.monotonic()
        with pytest.raises(runlock.RunLocked, match="in use by process"):
            runlock.acquire(run_dir)
        assert time.monotonic() - started < 0.5  # refused at once, not after waiting
    finally:
        os.close(trainer)


def test_acquire_holder_release_and_session(tmp_path: Path) -> None:
    """The lock in this process: held from acquire to release (or the session's end), seen by another open
    file description as a process would see it, the holder's PID in the file; free again afterwards."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    assert runlock.holder(run_dir) is None  # no .lock file yet
    with runlock.session():
        runlock.acquire(run_dir)
        runlock.acquire(run_dir)  # again: a no-op, not a refusal
        assert runlock.holder(run_dir) == os.getpid()
        assert (run_dir / runlock.LOCK).read_text() == f"{os.getpid()}\n"
        other = os.open(run_dir / runlock.LOCK, os.O_RDWR)  # what a second process's attempt meets
        try:
            with pytest.raises(BlockingIOError):
                runlock.fcntl.flock(other, runlock.fcntl.LOCK_EX | runlock.fcntl.LOCK_NB)
        finally:
            os.close(other)
    assert runlock.holder(run_dir) is None  # the session released it; the .lock file stays
    assert (run_dir / runlock.LOCK).exists()
    runlock.release(run_dir)  # releasing a lock not held: nothing happens


def test_a_holder_without_a_readable_pid_is_named_unknown(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / runlock.LOCK).write_text("not a pid\n")
    trainer = os.open(run_dir / runlock.LOCK, os.O_RDWR)
    try:
        runlock.fcntl.flock(trainer, runlock.fcntl.LOCK_EX | runlock.fcntl.LOCK_NB)
        assert runlock.holder(run_dir) == 0  # held, by a PID it cannot tell
        with pytest.raises(runlock.RunLocked, match=r"in use by process \(unknown PID\)"):
            runlock.acquire(run_dir)
    finally:
        os.close(trainer)


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() == 0, reason="root can write to read-only folders")
def test_a_run_directory_that_cannot_hold_a_lock_file_is_named(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir(mode=0o500)
    with pytest.raises(SeqclfError, match="cannot create its lock file .lock"):
        runlock.acquire(run_dir)
