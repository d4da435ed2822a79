"""Runs are never stranded or damaged (issue 15): stops at every moment, kills, locks, edits, other data.

Signals arrive at a chosen write ("N:SIGNAL:NAME": after the Nth fsync of NAME, before its rename) through
tests/faultwrap.py: a SIGINT in this process, a SIGKILL in a real `seqclf` process run under the wrapper.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from faultwrap import at_write
from helpers import (
    SIGKILL,
    cli_json,
    listed_status,
    make_dataset,
    posix_only,
    process,
    seqclf_at_write,
    write_config,
)
from stops import StopAt
from typer.testing import CliRunner

from seqclf.cli.app import app
from seqclf.store import checkpoint, files
from seqclf.store import rundir as runs

runner = CliRunner()


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("recovery") / "data", n_train=300, n_test=100)


def seqclf(*args: str, at_fsync: str) -> SimpleNamespace | subprocess.CompletedProcess:
    """`seqclf ARGS` with a signal at the write `at_fsync` names (faultwrap.py): a SIGKILL in a real process
    (it ends the process), any other signal in this one; returncode and stderr as from a process."""
    if "SIGKILL" in at_fsync:
        return seqclf_at_write(at_fsync, *args)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(files, "os", at_write(at_fsync))
        result = runner.invoke(app, list(args))
    return SimpleNamespace(returncode=result.exit_code, stderr=result.stderr)


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def files_of(run_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}


# ---------------------------------------------------------------- 1: stopped during set-up or epoch 1


@posix_only  # signals at a write, to this process or a real one
@pytest.mark.parametrize("at_fsync, code, status", [
    pytest.param("1:SIGINT:summary.json", 130, "interrupted", id="SIGINT-after-config.yaml"),
    pytest.param("1:SIGKILL:best.pt", -SIGKILL, "failed", id="SIGKILL-in-epoch-1", marks=process),
])
def test_a_run_stopped_before_its_first_epoch_is_restartable_under_its_name(
        tmp_path: Path, data_root: Path, at_fsync: str, code: int, status: str) -> None:
    cfg = write_config(tmp_path, data_root, "orph")
    run_dir = tmp_path / "runs" / "orph"
    first = seqclf("train", "--config", str(cfg), at_fsync=at_fsync)
    assert first.returncode == code, first.stderr
    assert (run_dir / "config.yaml").exists() and not (run_dir / "last.pt").exists()
    assert "Traceback" not in first.stderr
    assert listed_status(run_dir) == status  # Ctrl-C ends it interrupted; nothing left "running" by a dead process
    temps = [p for p in run_dir.iterdir() if p.name.endswith(".tmp")]
    for temp in temps:  # a SIGKILL mid-write leaves its temp file; an hour later it is stale
        os.utime(temp, (time.time() - 3600,) * 2)
    code, output = invoke("train", "--resume", str(run_dir))
    assert code == 2 and "nothing to resume" in output and "restartable under its name" in output, output
    assert cli_json("train", "--config", str(cfg))["status"] == "finished"  # the same name, restarted
    assert [row["epoch"] for row in runs.RunDir(run_dir).read_metrics()] == [1, 2]
    assert not [p for p in run_dir.iterdir() if p.name.endswith(".tmp")]  # the dead writer's temp is gone


def test_a_named_run_with_trained_epochs_is_never_restarted(finished: Path, tmp_path: Path, data_root: Path) -> None:
    cfg = write_config(tmp_path, data_root, "f", epochs=1)  # the config that trained `finished`, same folder
    before = files_of(finished)
    code, output = invoke("train", "--config", str(cfg))
    assert code == 2 and "holds trained epochs" in output and "--resume" in output, output
    assert files_of(finished) == before


# ---------------------------------------------------------------- 3, 4: killed or stopped at the end


@process
@posix_only
def test_a_kill_between_the_last_checkpoint_and_its_metrics_line_is_repaired_on_resume(
        tmp_path: Path, data_root: Path) -> None:
    cfg = write_config(tmp_path, data_root, "k")
    run_dir = tmp_path / "runs" / "k"
    killed = seqclf("train", "--config", str(cfg), at_fsync="2:SIGKILL:metrics.jsonl")
    assert killed.returncode == -SIGKILL, killed.stderr
    assert checkpoint.read(run_dir / "last.pt").epoch == 2 and len(runs.RunDir(run_dir).read_metrics()) == 1
    assert runs.RunDir(run_dir).read_summary()["status"] == "running" and listed_status(run_dir) == "interrupted"
    code, output = invoke("train", "--resume", str(run_dir))
    assert code == 0, output
    history = checkpoint.read(run_dir / "last.pt").history
    assert runs.RunDir(run_dir).read_metrics() == history and len(history) == 2
    summary = runs.RunDir(run_dir).read_summary()
    assert summary["status"] == "finished" and summary["epochs"] == 2 and summary["test_accuracy"] is not None


@posix_only  # signals at a write, to this process or a real one
def test_sigint_during_the_final_scoring_ends_interrupted_then_resume_finishes(tmp_path: Path,
                                                                               data_root: Path) -> None:
    cfg = write_config(tmp_path, data_root, "s", epochs=1)
    run_dir = tmp_path / "runs" / "s"
    # summary.json: 1 "running" at the start, 2 after epoch 1, 3 the final one (signal handlers already restored)
    stopped = seqclf("train", "--config", str(cfg), at_fsync="3:SIGINT:summary.json")
    assert stopped.returncode == 130 and "Traceback" not in stopped.stderr, stopped.stderr
    assert runs.RunDir(run_dir).read_summary()["status"] == "interrupted"
    code, output = invoke("train", "--resume", str(run_dir))
    assert code == 0 and runs.RunDir(run_dir).read_summary()["status"] == "finished", output


def interrupted_run(tmp_path: Path, data_root: Path, name: str, stop_call: int) -> Path:
    """A 2-epoch run of 4 steps an epoch, stopped at should_stop() call `stop_call` (5: between epochs)."""
    from seqclf.config import load_config
    from seqclf.errors import Interrupted
    from seqclf.training.start import train

    cfg = load_config(write_config(tmp_path, data_root, name))
    with pytest.raises(Interrupted):
        train(cfg, stop=StopAt(stop_call))
    return tmp_path / "runs" / name


def test_a_lost_best_pt_is_rebuilt_from_last_pt_when_they_hold_the_same_weights(finished: Path) -> None:
    before = runs.RunDir(finished).read_summary()  # 1 epoch: its best, saved in last.pt at its end
    (finished / "best.pt").unlink()
    code, output = invoke("train", "--resume", str(finished))
    assert code == 0, output
    after = runs.RunDir(finished).read_summary()
    assert after["status"] == "finished" and after["test_accuracy"] == before["test_accuracy"]
    best, last = checkpoint.read(finished / "best.pt"), checkpoint.read(finished / "last.pt")
    assert best.state is None and best.epoch == 1
    assert all(best.model[key].equal(value) for key, value in last.model.items())


def test_a_lost_best_pt_that_cannot_be_rebuilt_is_refused_touching_nothing(tmp_path: Path,
                                                                          data_root: Path) -> None:
    run_dir = interrupted_run(tmp_path, data_root, "b", stop_call=7)  # epoch 2, step 2
    (run_dir / "best.pt").unlink()
    before = files_of(run_dir)
    code, output = invoke("train", "--resume", str(run_dir))
    assert code == 2 and "best.pt is missing" in output and "--init-from" in output, output
    assert files_of(run_dir) == before and runs.RunDir(run_dir).read_summary()["status"] == "interrupted"


def test_a_full_disk_that_blocks_even_the_summary_is_not_listed_as_running(
        tmp_path: Path, data_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from helpers import fail_writes

    from seqclf.config import load_config
    from seqclf.errors import TrainingError
    from seqclf.training.start import train

    run_dir = tmp_path / "runs" / "full"
    stop = StopAt(on_call={5: lambda: fail_writes(monkeypatch, run_dir, room=0)})  # after epoch 1: no byte fits
    with pytest.raises(TrainingError, match="No space left"):
        train(load_config(write_config(tmp_path, data_root, "full")), stop=stop)
    assert runs.RunDir(run_dir).read_summary()["status"] == "running"  # "failed" could not be written either
    assert listed_status(run_dir) == "interrupted"  # no process holds its lock; last.pt of epoch 1 is there


# ---------------------------------------------------------------- 5: one process per run directory


# ---------------------------------------------------------------- 2, 6: what a resume continues with


@pytest.fixture(scope="module")
def finished_once(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> Path:
    """One finished 1-epoch run, trained once for the module; tests change only their own copy of it."""
    folder = tmp_path_factory.mktemp("finished")
    assert invoke("train", "--config", str(write_config(folder, data_root, "f", epochs=1)))[0] == 0
    return folder / "runs" / "f"


@pytest.fixture
def finished(finished_once: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(finished_once, tmp_path / "runs" / "f"))


def test_resume_refuses_other_data_and_keeps_the_results(finished: Path, tmp_path: Path) -> None:
    other = make_dataset(tmp_path / "other", n_train=300, n_test=100, seed=1)  # same shapes, other pixels
    before = files_of(finished)
    code, output = invoke("train", "--resume", str(finished), "--set", f"data.root={other}", "--set",
                          "train.epochs=2")
    assert code == 2 and "is not the data" in output and "seqclf eval" in output, output
    code, output = invoke("train", "--resume", str(finished), "--set", f"data.root={other}")
    assert code == 0 and "nothing to resume" in output, output  # finished: nothing trains, nothing is read
    assert files_of(finished) == before
    smaller = make_dataset(tmp_path / "smaller", n_train=200, n_test=100)
    code, output = invoke("train", "--resume", str(finished), "--set", f"data.root={smaller}", "--set",
                          "train.epochs=2")
    assert code == 2 and "(100 train / 100 val / 100 test" in output and "(200 train / 100 val" in output, output


def test_resume_refuses_an_edited_config_yaml_naming_the_keys(finished: Path) -> None:
    path = finished / "config.yaml"
    original = path.read_text()
    path.write_text(original.replace("hidden_size: 8", "hidden_size: 9").replace("lr: 0.001", "lr: 0.5"))
    before = files_of(finished)
    code, output = invoke("train", "--resume", str(finished))
    assert code == 2 and "model.hidden_size: 8 in last.pt, 9 in the file" in " ".join(output.split()), output
    assert "train.lr" in output and files_of(finished) == before
    path.write_text(original.replace("epochs: 1", "epochs: 2"))  # a key that may change on resume: applied
    code, output = invoke("train", "--resume", str(finished))
    assert code == 0, output
    assert [row["epoch"] for row in runs.RunDir(finished).read_metrics()] == [1, 2]


def test_a_checkpoint_without_a_fingerprint_still_resumes(finished: Path, tmp_path: Path) -> None:
    payload = checkpoint.load(finished / "last.pt")
    assert set(payload["data"]["fingerprint"]) == {"train", "val", "test", "digest"}
    del payload["data"]["fingerprint"]
    checkpoint.save(finished / "last.pt", payload)
    assert checkpoint.read(finished / "last.pt").data.fingerprint is None
    moved = tmp_path / "moved"
    shutil.copytree(make_dataset(tmp_path / "x", n_train=300, n_test=100, seed=1), moved)
    code, output = invoke("train", "--resume", str(finished), "--set", "train.epochs=2", "--set",
                          f"data.root={moved}")
    assert code == 0, output  # nothing to compare with: as before fingerprints
