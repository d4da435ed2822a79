"""Trustworthy runs: safe interrupts, atomic files, non-finite losses, clear errors (exact resume: test_start.py)."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import (
    EXACT,
    ROOT,
    STEPS,
    assert_stopped_by_a_signal_and_resumable,
    exact_config,
    fail_writes,
    make_dataset,
    posix_only,
    write_idx,
)
from stops import StopAt
from typer.testing import CliRunner

import seqclf.training.start as training
from seqclf.cli.app import app
from seqclf.errors import TrainingError
from seqclf.store import checkpoint, files
from seqclf.store import rundir as runs
from seqclf.training.start import train

runner = CliRunner()


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("reliability") / "data")


# ---------------------------------------------------------------- signals


def long_run_config(tmp_path: Path, data_root: Path, name: str) -> Path:
    """A long CLI run: many epochs of tiny data (6 steps an epoch)."""
    cfg = tmp_path / f"{name}.yaml"
    cfg.write_text(f"data:\n  name: idx\n  root: {data_root}\n  val_size: 100\n  max_train: 300\n"
                   f"model:\n  hidden_size: 8\ntrain:\n  epochs: 100000\n  batch_size: 50\n  device: cpu\n"
                   f"  num_threads: 1\noutput:\n  dir: {tmp_path}\n  name: {name}\n")
    return cfg


@posix_only  # a signal to this process (on Windows os.kill ends it)
def test_a_real_sigint_saves_last_pt_and_exits_130(tmp_path: Path, data_root: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A real SIGINT to this process, which trains through the CLI with GracefulStop's own handlers: sent
    in epoch 2, step 3 (poll 6 + 1 + 3 of should_stop); the handler, not the test, asks the loop to stop.
    A real SIGTERM to a real process, and its exit status, is test_lock.py's locked run."""
    run_dir = tmp_path / "long"
    ctrl_c = lambda: os.kill(os.getpid(), signal.SIGINT)  # noqa: E731
    monkeypatch.setattr(training, "GracefulStop", lambda: StopAt(on_call={6 + 1 + 3: ctrl_c}))
    handler = signal.getsignal(signal.SIGINT)
    result = runner.invoke(app, ["train", "--config", str(long_run_config(tmp_path, data_root, run_dir.name))])
    assert signal.getsignal(signal.SIGINT) is handler  # handlers restored
    assert "SIGINT" in result.stderr and checkpoint.load(run_dir / "last.pt")["epoch"] == 1
    assert_stopped_by_a_signal_and_resumable(run_dir, result.exit_code, 130, result.stderr)


@posix_only  # a signal to this process (on Windows os.kill ends it)
def test_a_second_ctrl_c_aborts_at_once_leaving_files_intact(data_root: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Real SIGINTs to this process: the first asks to stop, the second lands while last.pt is being written."""
    run_dir = tmp_path / "r"
    saved: dict[str, bytes] = {}
    real_fsync = os.fsync

    def second_ctrl_c(fd: int) -> None:
        real_fsync(fd)
        monkeypatch.setattr(files.os, "fsync", real_fsync)  # one Ctrl-C, not one per write
        os.kill(os.getpid(), signal.SIGINT)  # mid-write: after the bytes, before the rename

    def first_ctrl_c() -> None:
        saved.update({p.name: p.read_bytes() for p in run_dir.iterdir()})
        os.kill(os.getpid(), signal.SIGINT)
        monkeypatch.setattr(files.os, "fsync", second_ctrl_c)

    monkeypatch.setattr(training, "GracefulStop", lambda: StopAt(on_call={STEPS + 4: first_ctrl_c}))
    handler = signal.getsignal(signal.SIGINT)
    args = ["train", "--config", "/dev/null"] + [f"--set={s}" for s in EXACT]
    result = runner.invoke(app, args + [f"--set=data.root={data_root}", f"--set=output.dir={tmp_path}",
                                        "--set=output.name=r"])
    assert result.exit_code == 130, result.output
    assert "aborted" in result.output and "Traceback" not in result.output
    after = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    assert saved and after.pop("summary.json") != saved.pop("summary.json") and after == saved  # epoch 1's files
    assert runs.RunDir(run_dir).read_summary()["status"] == "interrupted"  # never left "running"
    assert signal.getsignal(signal.SIGINT) is handler  # handlers restored


def test_a_nested_graceful_stop_restores_the_original_handlers() -> None:
    """A search enters its GracefulStop and each trial's training loop enters it again: the inner block keeps
    the handlers, and only the outer one's end restores what was there before."""
    from seqclf.training.signals import GracefulStop

    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    stop = GracefulStop()
    with stop:
        with stop:
            assert all(signal.getsignal(sig) == stop._handle for sig in before)
        assert all(signal.getsignal(sig) == stop._handle for sig in before)  # the outer block still handles them
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.01)  # the handler runs between bytecodes of the main thread
        assert stop.should_stop() and stop.signum == signal.SIGTERM
    assert {sig: signal.getsignal(sig) for sig in before} == before


# ---------------------------------------------------------------- failures


def test_a_diverging_run_stops_with_exit_1_and_remedies(data_root: Path, tmp_path: Path) -> None:
    args = ["train", "--config", "/dev/null"] + [f"--set={s}" for s in EXACT] + [
        f"--set=data.root={data_root}", f"--set=output.dir={tmp_path}", "--set=output.name=r",
        "--set=train.optimizer=sgd", "--set=train.lr=1e38", "--set=train.scheduler=none", "--set=train.grad_clip=0"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert "non-finite loss" in result.output and "at epoch 1, step" in result.output
    assert "train.lr" in result.output and "train.grad_clip" in result.output
    assert not (tmp_path / "r" / "last.pt").exists() and not (tmp_path / "r" / "best.pt").exists()
    assert runs.RunDir(tmp_path / "r").read_summary()["status"] == "failed"


@pytest.mark.parametrize("poison_at, where", [(STEPS + 1 + 2, "loss (nan) at epoch 2, step 3"),
                                              (2 * STEPS + 1, "weights at epoch 2, step 10")])
def test_non_finite_weights_never_reach_a_checkpoint(data_root: Path, tmp_path: Path, poison_at: int,
                                                     where: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A divergence in epoch 2 (a NaN put into the weights after a step) leaves epoch 1's files as they were."""
    run_dir = tmp_path / "r"
    saved: dict[str, bytes] = {}
    model: list[torch.nn.Module] = []
    real_new_run = training.new_run
    monkeypatch.setattr(training, "new_run", lambda *a, **k: model.append(real_new_run(*a, **k)) or model[-1])

    def poison() -> None:
        with torch.no_grad():
            next(model[0].state.model.parameters()).view(-1)[0] = float("nan")

    stop = StopAt(on_call={STEPS + 1: lambda: saved.update({p.name: p.read_bytes() for p in run_dir.iterdir()}),
                           poison_at: poison})
    with pytest.raises(TrainingError) as info:
        train(exact_config(data_root, tmp_path, "r"), stop=stop)
    assert info.value.exit_code == 1
    assert f"non-finite {where}" in str(info.value) and "train.lr" in str(info.value)
    after = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    assert {k: after[k] for k in ("best.pt", "last.pt", "metrics.jsonl")} == \
           {k: saved[k] for k in ("best.pt", "last.pt", "metrics.jsonl")}
    assert runs.RunDir(run_dir).read_summary()["status"] == "failed"


def test_a_full_disk_while_saving_keeps_the_previous_checkpoint(data_root: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir = tmp_path / "r"
    saved: dict[str, bytes] = {}

    def disk_fills_up() -> None:
        saved.update({p.name: p.read_bytes() for p in run_dir.iterdir()})
        fail_writes(monkeypatch, run_dir, room=4096)

    with pytest.raises(TrainingError, match="No space left on device") as info:
        train(exact_config(data_root, tmp_path, "r", "train.scheduler=none"),
              stop=StopAt(on_call={STEPS + 1: disk_fills_up}))
    assert info.value.exit_code == 1
    after = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    assert after.pop("summary.json") != saved.pop("summary.json") and after == saved  # epoch 1's files, no temps
    assert runs.RunDir(run_dir).read_summary()["status"] == "failed"  # small enough to fit: never left "running"


def test_an_unwritable_output_dir_is_reported_before_training(data_root: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for out in (blocker / "runs", blocker):
        args = ["train", "--config", "/dev/null", "--set", "data.name=idx", "--set", f"data.root={data_root}",
                "--set", f"output.dir={out}"]
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and "output.dir" in result.output and "cannot be written" in result.output
        assert "epoch" not in result.output and "run " not in result.output


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() == 0,
                    reason="root can write to read-only folders; Windows has no POSIX modes")
def test_a_read_only_output_dir_is_reported_before_training(data_root: Path, tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    result = runner.invoke(app, ["train", "--config", "/dev/null", "--set", "data.name=idx",
                                 "--set", f"data.root={data_root}", "--set", f"output.dir={locked}"])
    assert result.exit_code == 2 and "cannot be written" in result.output


# ---------------------------------------------------------------- bad IDX files


@pytest.mark.parametrize("damage, fragment", [
    ("magic", "not an IDX file"),
    ("dims", "dims"),
    ("truncated", "truncated"),
])
def test_bad_idx_files_are_named_with_exit_2(tmp_path: Path, damage: str, fragment: str) -> None:
    root = make_dataset(tmp_path / "data", n_train=200, n_test=50)
    target = root / "train-images-idx3-ubyte"
    raw = target.read_bytes()
    if damage == "magic":
        target.write_bytes(b"\x12\x34" + raw[2:])
    elif damage == "dims":
        write_idx(target, torch.zeros(200, 28 * 28, dtype=torch.uint8).view(200, 28, 28, 1).numpy())
    else:
        target.write_bytes(raw[:len(raw) // 2])
    result = runner.invoke(app, ["train", "--config", "/dev/null", "--set", "data.name=idx",
                                 "--set", f"data.root={root}", "--set", "data.val_size=50",
                                 "--set", f"output.dir={tmp_path / 'runs'}"])
    assert result.exit_code == 2, result.output
    assert str(target) in result.output and fragment in result.output
    assert "Traceback" not in result.output


def test_docs_explain_reliability() -> None:
    section = (ROOT / "docs" / "reliability.md").read_text()
    assert "(docs/reliability.md)" in (ROOT / "README.md").read_text()
    for fragment in ("--resume", "bitwise", "| 130 |", "| 143 |", "| 1 |", "| 2 |", "weights_only=True", "2.10"):
        assert fragment in section, fragment
