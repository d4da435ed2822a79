"""Signals outside the epochs: SIGTERM and Ctrl-C in set-up and in the final summary, in real processes
stopped at a chosen write (tests/faultwrap.py: a SIGKILL in a real process, other signals sent to this
one while seqclf runs in it; see test_recovery.seqclf)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import SIGKILL, cli_json, make_dataset, posix_only, process
from test_recovery import invoke, listed_status, seqclf, write_config

from seqclf.store import rundir as runs

pytestmark = posix_only  # signals at a write


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("signals") / "data", n_train=300, n_test=100)


def temps(run_dir: Path) -> list[str]:
    return [p.name for p in run_dir.iterdir() if p.name.endswith(".tmp")]


def test_sigterm_in_set_up_says_so_exits_143_and_leaves_no_temp_file(tmp_path: Path, data_root: Path) -> None:
    cfg = write_config(tmp_path, data_root, "setup")
    run_dir = tmp_path / "runs" / "setup"
    stopped = seqclf("train", "--config", str(cfg), at_fsync="1:SIGTERM:config.yaml")
    assert stopped.returncode == 143, stopped.stderr
    assert "terminated (SIGTERM)" in stopped.stderr and "Traceback" not in stopped.stderr
    assert temps(run_dir) == [] and not (run_dir / "config.yaml").exists()
    assert listed_status(run_dir) == "failed"  # listed, although it holds only its lock
    code, output = invoke("train", "--resume", str(run_dir))
    assert code == 2 and "nothing to resume" in output and "before it wrote config.yaml" in output, output
    assert cli_json("train", "--config", str(cfg))["status"] == "finished"  # restarted under its name


@process
def test_a_folder_holding_only_the_lock_is_listed_and_restartable(tmp_path: Path, data_root: Path) -> None:
    cfg = write_config(tmp_path, data_root, "killed")
    run_dir = tmp_path / "runs" / "killed"
    killed = seqclf("train", "--config", str(cfg), at_fsync="1:SIGKILL:config.yaml")
    assert killed.returncode == -SIGKILL
    for temp in temps(run_dir):  # the killed writer's config.yaml, not yet renamed
        os.unlink(run_dir / temp)
    assert sorted(p.name for p in run_dir.iterdir()) == [".lock"]
    assert [str(r.path) for r in runs.RunDir.find(tmp_path / "runs")] == [str(run_dir)]
    assert listed_status(run_dir) == "failed"
    code, output = invoke("train", "--resume", str(run_dir))
    assert code == 2 and "not a run directory" not in output and "restartable under its name" in output, output
    assert cli_json("train", "--config", str(cfg))["status"] == "finished"


@pytest.mark.parametrize("at_fsync, code", [
    pytest.param("3:SIGTERM:summary.json", 143, id="SIGTERM-in-the-final-summary"),
    pytest.param("1:SIGINT:summary.json", 130, id="Ctrl-C-in-the-first-summary"),
])
def test_a_signal_while_summary_json_is_written_ends_interrupted(tmp_path: Path, data_root: Path, at_fsync: str,
                                                                 code: int) -> None:
    cfg = write_config(tmp_path, data_root, "s", epochs=1)  # summary.json: running, epoch 1, finished
    run_dir = tmp_path / "runs" / "s"
    stopped = seqclf("train", "--config", str(cfg), at_fsync=at_fsync)
    assert stopped.returncode == code, stopped.stderr
    assert runs.RunDir(run_dir).read_summary()["status"] == "interrupted"
    assert temps(run_dir) == [] and "Traceback" not in stopped.stderr
