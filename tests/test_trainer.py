"""The trainer (seqclf.training.trainer) and the failures it raises (seqclf.training.failures): each
failure's message from its fields, one epoch as `Trainer.epoch` records it, the steps bench times,
callbacks that prune or fail. Interrupts and resumes to the bit are test_reliability.py's."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers import set_args
from stops import StopAt
from typer.testing import CliRunner

from seqclf.cli.app import app
from seqclf.config import load_config
from seqclf.console import Output
from seqclf.errors import Interrupted, Pruned, SeqclfError, TrainingError
from seqclf.store import checkpoint
from seqclf.store import rundir as runs
from seqclf.store.runlog import RunLog
from seqclf.training.failures import LostContact, NonFinite, OutOfMemory, RunInterrupted
from seqclf.training.prepare import prepare
from seqclf.training.signals import GracefulStop
from seqclf.training.start import new_run, resume, train
from seqclf.training.trainer import Trainer

STEPS = 16  # tiny_args: 500 training examples / batch 32, rounded up


# ---------------------------------------------------------------- messages built from fields


@pytest.mark.parametrize("loss, overrides, expected", [
    pytest.param(float("nan"), [], "non-finite loss (nan) at epoch 2, step 7: training stopped and no checkpoint was "
                 "overwritten (RUN keeps the last good ones). Remedies: a lower train.lr (now 0.001), gradient "
                 "clipping (train.grad_clip=1.0).", id="loss-without-clipping"),
    pytest.param(None, ["train.grad_clip=0.5", "train.precision=bf16"],
                 "non-finite weights at epoch 2, step 7: training stopped and no checkpoint was overwritten (RUN "
                 "keeps the last good ones). Remedies: a lower train.lr (now 0.001), a tighter train.grad_clip "
                 "(now 0.5), or train.precision=fp32.", id="weights-with-clipping-in-bf16"),
])
def test_non_finite_names_what_where_and_the_remedies(loss: float | None, overrides: list[str],
                                                      expected: str, tmp_path: Path) -> None:
    failure = NonFinite(loss, 2, 7, tmp_path / "r", load_config(None, overrides).train)
    assert str(failure) == expected.replace("RUN", str(tmp_path / "r"))
    assert isinstance(failure, TrainingError) and failure.exit_code == 1


@pytest.mark.parametrize("signum, step, where, code", [
    (signal.SIGINT, 3, "SIGINT: stopped at epoch 2, step 3", 130),
    (signal.SIGTERM, None, "SIGTERM: stopped after epoch 1", 143),
])
def test_run_interrupted_says_where_and_how_to_continue(signum: int, step: int | None, where: str, code: int,
                                                        tmp_path: Path) -> None:
    failure = RunInterrupted(signum, runs.RunDir(tmp_path), 1, step)
    assert str(failure) == f"{where}; saved {tmp_path / 'last.pt'}. Continue with: seqclf train --resume {tmp_path}"
    assert isinstance(failure, Interrupted) and failure.exit_code == code


def test_out_of_memory_suggests_half_the_batch_in_a_new_run() -> None:
    failure = OutOfMemory(torch.OutOfMemoryError("CUDA out of memory.\nmore detail"), torch.device("cuda", 0), 1,
                          "training runs/r", "runs/r/config.yaml", "runs/r/best.pt")
    assert str(failure) == (
        "out of memory on cuda:0 while training runs/r with train.batch_size=1 (CUDA out of memory.). Free the "
        "device's memory (other processes on it) or train with half the batch: seqclf train --config "
        "runs/r/config.yaml --set train.batch_size=1 --init-from runs/r/best.pt")
    assert failure.exit_code == 1
    unnamed = OutOfMemory(RuntimeError(), torch.device("mps"), 64, "scoring", "c.yaml")
    assert "(RuntimeError)" in str(unnamed) and str(unnamed).endswith("--set train.batch_size=32")


def test_lost_contact_exits_1_without_counting_as_a_trials_training_failure() -> None:
    failure = LostContact(1, RuntimeError("Connection closed by peer " + "x" * 400 + "\nsecond line"))
    assert str(failure).startswith("rank 1: lost contact with the other ranks: one of them failed or was stopped")
    assert str(failure).endswith("Detail: Connection closed by peer " + "x" * (300 - 26))
    assert failure.exit_code == 1 and isinstance(failure, SeqclfError) and not isinstance(failure, TrainingError)


# ---------------------------------------------------------------- the trainer on real tiny runs


def trainer_for(overrides: list[str], run_dir: Path, stop: GracefulStop | None = None) -> Trainer:
    """A Trainer on a fresh run in run_dir, as start.train builds one (without its console lines)."""
    ready = prepare(load_config(None, overrides))
    run_dir.mkdir(parents=True)
    run = new_run(ready.cfg, RunLog(run_dir, ready.cfg), ready.data, ready.device)
    return Trainer(run, Output(quiet=True), stop or GracefulStop())


def test_one_epoch_steps_the_schedule_validates_and_records(tiny_overrides: list[str], tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []
    trainer = trainer_for(tiny_overrides + ["train.scheduler=step", "train.step_size=1", "train.gamma=0.5"],
                          tmp_path / "r")
    trainer.run.callbacks = (seen.append,)
    trainer.epoch()
    state = trainer.run.state
    assert state.epoch == 1 and state.cursor.order is None  # between epochs
    assert seen == state.history == runs.RunDir(tmp_path / "r").read_metrics()  # the callback saw the recorded row
    assert seen[0]["epoch"] == 1 and seen[0]["lr"] == pytest.approx(1e-3)  # the rate the epoch trained with
    assert state.optimizer.param_groups[0]["lr"] == pytest.approx(5e-4)  # stepped once, at the epoch's end
    assert checkpoint.load(tmp_path / "r" / runs.LAST)["epoch"] == 1
    assert (tmp_path / "r" / runs.BEST).is_file()  # the first epoch is the best so far
    assert runs.RunDir(tmp_path / "r").read_summary()["status"] == "running"


def test_run_steps_stops_at_until_and_continues_from_there(tiny_overrides: list[str], tmp_path: Path) -> None:
    trainer = trainer_for(tiny_overrides, tmp_path / "r")
    state = trainer.run.state
    state.begin_epoch(len(trainer.run.data.train))
    with Output(quiet=True).progress(STEPS, "steps") as bar:
        loss, stopping = trainer.run_steps(bar, 5)
        assert (state.cursor.step, float(state.cursor.sums["steps"]), stopping) == (5, 5.0, False)
        assert torch.isfinite(loss)
        trainer.run_steps(bar, STEPS)
    assert (state.cursor.step, float(state.cursor.sums["steps"])) == (STEPS, STEPS)


def test_run_steps_return_at_the_step_a_stop_is_asked(tiny_overrides: list[str], tmp_path: Path) -> None:
    trainer = trainer_for(tiny_overrides, tmp_path / "r", StopAt(4))
    trainer.run.state.begin_epoch(len(trainer.run.data.train))
    with Output(quiet=True).progress(STEPS, "steps") as bar:
        _, stopping = trainer.run_steps(bar, STEPS)
    assert stopping and trainer.run.state.cursor.step == 4


def test_a_callback_that_prunes_ends_the_run_pruned_after_its_epoch(tiny_overrides: list[str],
                                                                    tmp_path: Path) -> None:
    def prune(row: dict[str, Any]) -> None:
        raise Pruned(f"pruned after epoch {row['epoch']}")

    with pytest.raises(Pruned, match="pruned after epoch 1"):
        train(load_config(None, tiny_overrides + ["output.name=p"]), callbacks=[prune])
    run_dir = tmp_path / "runs" / "p"
    assert runs.RunDir(run_dir).read_summary()["status"] == "pruned"
    # the epoch was recorded before the callback
    assert [row["epoch"] for row in runs.RunDir(run_dir).read_metrics()] == [1]
    assert checkpoint.load(run_dir / runs.LAST)["epoch"] == 1


@pytest.mark.parametrize("raised, status", [(ValueError("a bug in a callback"), "failed"),
                                            (KeyboardInterrupt(), "interrupted")])
def test_whatever_a_callback_raises_ends_the_summary_and_propagates(tiny_overrides: list[str], tmp_path: Path,
                                                                    raised: BaseException, status: str) -> None:
    def callback(row: dict[str, Any]) -> None:
        raise raised

    with pytest.raises(type(raised)) as info:
        train(load_config(None, tiny_overrides + ["output.name=c"]), callbacks=[callback])
    assert info.value is raised  # not turned into a message: only failures the trainer knows are
    assert runs.RunDir(tmp_path / "runs" / "c").read_summary()["status"] == status


# ---------------------------------------------------------------- early stopping


STALLED = ["train.lr=1e-9", "train.epochs=6", "train.patience=2"]  # the weights barely move: epoch 1 stays the best


def test_patience_stops_a_run_whose_val_accuracy_no_longer_improves(tiny_overrides: list[str],
                                                                     tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "p"
    result = CliRunner().invoke(app, ["train", "--config", "lstm", *set_args([*tiny_overrides, *STALLED,
                                                                               "output.name=p"])])
    assert result.exit_code == 0, result.output
    assert "stopped early after epoch 3 of 6: no better validation accuracy than epoch 1's" in \
        " ".join(result.output.split()) and "(train.patience=2)" in result.output
    summary = runs.RunDir(run_dir).read_summary()
    assert (summary["status"], summary["epochs"], summary["best_epoch"]) == ("finished", 3, 1)
    assert summary["stopped_early"] is True and summary["stopped_epoch"] == 3 and summary["test_accuracy"] > 0
    assert [row["epoch"] for row in runs.RunDir(run_dir).read_metrics()] == [1, 2, 3]
    # resumed as it is: nothing to train, no file written
    files = lambda: {p.name: p.read_bytes() for p in run_dir.iterdir() if p.name != ".lock"}  # noqa: E731
    before = files()
    result = CliRunner().invoke(app, ["train", "--resume", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert f"{run_dir} stopped early after epoch 3 of 6" in result.output and files() == before
    assert f"seqclf train --resume {run_dir} --set train.patience=0" in " ".join(result.output.split())
    # patience off: it trains on to its planned epochs
    result = CliRunner().invoke(app, ["train", "--resume", str(run_dir), "--set", "train.patience=0", "--json"])
    assert result.exit_code == 0, result.output
    assert runs.RunDir(run_dir).read_summary()["epochs"] == 6
    assert runs.RunDir(run_dir).read_summary()["stopped_early"] is False


def test_a_resumed_run_stops_early_where_it_would_have(tiny_overrides: list[str], tmp_path: Path) -> None:
    with pytest.raises(Interrupted):  # stopped between epochs 2 and 3 (each epoch polls STEPS + 1 times)
        train(load_config(None, [*tiny_overrides, *STALLED, "output.name=r"]), stop=StopAt(2 * (STEPS + 1)))
    summary = resume(tmp_path / "runs" / "r")
    assert (summary["epochs"], summary["stopped_early"], summary["stopped_epoch"]) == (3, True, 3)
