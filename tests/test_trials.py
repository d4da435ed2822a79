"""The worker loop of `seqclf tune` (seqclf/search/trials.py): trials as ordinary runs, orphans, Ctrl-C, failures.

Several worker processes on one study (trials.spawn) are tests/test_tune.py's PostgreSQL test.
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import posix_only, set_args
from stops import StopAt
from typer.testing import CliRunner

from seqclf.cli.app import app
from seqclf.config import load_config
from seqclf.errors import TrainingError

optuna = pytest.importorskip("optuna", reason="seqclf tune needs the optional extra seqclf[tune]")

from seqclf.console import Output  # noqa: E402
from seqclf.search.space import load_space  # noqa: E402
from seqclf.search.study import Settings, open_study, study_info  # noqa: E402
from seqclf.search.trials import FAILURES_IN_A_ROW, UNCLAIMED_AFTER, work  # noqa: E402
from seqclf.training import signals  # noqa: E402
from seqclf.training.signals import GracefulStop  # noqa: E402


def test_a_killed_workers_trial_is_failed_by_the_next_worker(study_files: dict[str, Path]) -> None:
    base = load_config(study_files["config"])
    settings = Settings(base, load_space(study_files["space"], base), study="orphan", trials=1, pruner="none")
    study = open_study(settings)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that no longer runs: what SIGKILL leaves behind
    orphan = study.ask()
    orphan.set_user_attr("worker", f"{socket.gethostname()}:{dead.pid}")
    work(settings, Output(quiet=True), GracefulStop())
    info = study_info("orphan", None, base)
    assert [(t["number"], t["state"]) for t in info["trials"]] == [(0, "fail"), (1, "complete")]


def test_a_trial_no_worker_claimed_is_failed_once_it_is_a_minute_old(study_files: dict[str, Path]) -> None:
    """A worker that lost the storage right after ask() leaves a running trial that names no worker."""
    import optuna

    base = load_config(study_files["config"])
    settings = Settings(base, load_space(study_files["space"], base), study="unclaimed", trials=3, pruner="none")
    study = open_study(settings)
    for age in (UNCLAIMED_AFTER + 5, 1):  # trial 0: long unclaimed; trial 1: a worker may be claiming it now
        started = datetime.datetime.now() - datetime.timedelta(seconds=age)
        study.add_trial(optuna.trial.FrozenTrial(
            number=0, trial_id=0, state=optuna.trial.TrialState.RUNNING, value=None, datetime_start=started,
            datetime_complete=None, params={}, distributions={}, user_attrs={}, system_attrs={},
            intermediate_values={}))
    work(settings, Output(quiet=True), GracefulStop())
    states = [t["state"] for t in study_info("unclaimed", None, base)["trials"]]
    assert states == ["fail", "running", "complete", "complete"]


@posix_only  # a signal to this process (on Windows os.kill ends it)
def test_ctrl_c_leaves_a_study_that_continues(study_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """A real SIGINT to this process while `seqclf tune` runs here with GracefulStop's own handlers: sent at
    should_stop() poll 8 (1 the worker loop's, then trial 0's 4 steps and 1 poll an epoch: epoch 2, step 2)."""
    runs = study_files["runs"]
    ctrl_c = lambda: os.kill(os.getpid(), signal.SIGINT)  # noqa: E731
    monkeypatch.setattr(signals, "GracefulStop", lambda: StopAt(on_call={8: ctrl_c}))  # what `tune` enters
    handler = signal.getsignal(signal.SIGINT)
    command = ["tune", "--config", str(study_files["config"]), "--space", str(study_files["space"]), "--study",
               "stop", "--trials", "2", "--pruner", "none", *set_args(["train.epochs=40"])]
    stopped = CliRunner().invoke(app, [*command, "--json"])
    assert stopped.exit_code == 130, stopped.output
    assert "run the same command again" in stopped.stderr and "Traceback" not in stopped.output
    assert signal.getsignal(signal.SIGINT) is handler  # handlers restored
    info = study_info("stop", None, load_config(study_files["config"]))
    assert [t["state"] for t in info["trials"]] == ["fail"]
    summary = json.loads((runs / "stop/trial-0000/summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["epochs"] == 1  # in the middle of trial 0's epoch 2
    monkeypatch.undo()
    done = CliRunner().invoke(app, [*command, "--set", "train.epochs=2", "--json"])
    assert done.exit_code == 0, done.stderr
    info = json.loads(done.stdout)
    assert [(t["number"], t["state"]) for t in info["trials"]] == [(0, "fail"), (1, "complete"), (2, "complete")]


def test_a_worker_gives_up_after_failed_trials_in_a_row(study_files: dict[str, Path]) -> None:
    """Every trial diverges (SGD at 1e38: a non-finite loss in the first step): each is told FAIL, and the
    worker stops after FAILURES_IN_A_ROW of them instead of asking for trials forever."""
    base = load_config(study_files["config"], ["train.optimizer=sgd", "train.lr=1e38", "train.grad_clip=0",
                                               "train.scheduler=none"])
    space = load_space(study_files["space"], base)
    del space["train.lr"]  # the base's rate, every trial
    settings = Settings(base, space, study="broken", trials=20, pruner="none")
    with pytest.raises(TrainingError, match=f"{FAILURES_IN_A_ROW} trials in a row failed"):
        work(settings, Output(quiet=True), GracefulStop())
    info = study_info("broken", None, base)
    assert [t["state"] for t in info["trials"]] == ["fail"] * FAILURES_IN_A_ROW
    statuses = [json.loads(path.read_text())["status"]
                for path in sorted((study_files["runs"] / "broken").glob("trial-*/summary.json"))]
    assert statuses == ["failed"] * FAILURES_IN_A_ROW  # each an ordinary run that says how it ended
