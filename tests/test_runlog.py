"""A run's record on disk (seqclf/store/runlog.py): summary.json says only what the run directory's files hold,
whichever write fails; what each call writes, on rank 0 only; TensorBoard, optional."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from helpers import ROOT, epoch, make_dataset, tiny_args

from seqclf.config import load_config
from seqclf.errors import SeqclfError, TrainingError
from seqclf.store import files
from seqclf.store import rundir as runs
from seqclf.store.runlog import RunLog
from seqclf.training.start import train


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("runlog") / "data", n_train=300, n_test=100)


def full_disk_at(monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    """The nth fsync of an atomic write fails with ENOSPC; later ones succeed (space was freed meanwhile)."""
    real, calls = os.fsync, []

    def fsync(fd: int) -> None:
        calls.append(fd)
        if len(calls) == n:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd)

    monkeypatch.setattr(files.os, "fsync", fsync)


@pytest.mark.parametrize("n", range(3, 12))
def test_a_full_disk_at_any_write_leaves_a_summary_that_the_files_hold(tmp_path: Path, data_root: Path,
                                                                       monkeypatch: pytest.MonkeyPatch,
                                                                       n: int) -> None:
    # config.yaml, summary.json, then per epoch best.pt (when better), last.pt, metrics.jsonl, summary.json
    cfg = load_config(None, [*tiny_args(data_root, tmp_path / "runs"), "train.epochs=3", "output.name=r",
                             "train.lr=0.01"])
    full_disk_at(monkeypatch, n)
    with pytest.raises(TrainingError, match="No space left"):
        train(cfg)
    run = runs.RunDir(tmp_path / "runs" / "r")
    summary = run.read_summary()
    if summary is None:
        return
    held = {row["epoch"]: row["val_accuracy"] for row in run.read_metrics()}  # the epochs some file holds
    for path in (run.best, run.last):
        if path.exists():
            held.update({row["epoch"]: row["val_accuracy"] for row in torch.load(path, weights_only=True)["history"]})
    assert summary["epochs"] <= max(held, default=0), (summary, held)
    if summary["best_epoch"]:
        assert held.get(summary["best_epoch"]) == summary["val_accuracy"], (summary, held)


def progress(epochs: int, best_epoch: int, best_accuracy: float) -> SimpleNamespace:
    """What summary() reads of a TrainingState."""
    return SimpleNamespace(epoch=epochs, best_epoch=best_epoch, best_accuracy=best_accuracy, total_seconds=3.0)


def test_the_summary_keeps_the_test_scores_until_new_ones_and_adds_the_extras(tmp_path: Path) -> None:
    log = RunLog(tmp_path, load_config(None), summary_extra={"study": "s", "trial": 3})
    started = log.summary("running", progress(0, 0, -1.0), 1000)
    assert started["val_accuracy"] is None and started["test_accuracy"] is None  # no epoch yet
    assert (started["study"], started["trial"], log.status) == ("s", 3, "running")
    log.summary("finished", progress(2, 1, 0.75), 1000, test={"accuracy": 0.7, "loss": 0.9})
    again = log.summary("interrupted", progress(3, 1, 0.75), 1000)  # e.g. extended, then stopped
    assert (again["test_accuracy"], again["test_loss"], again["val_accuracy"]) == (0.7, 0.9, 0.75)
    assert runs.RunDir(tmp_path).read_summary() == again and again["checkpoint"] == str(tmp_path / runs.BEST)
    with pytest.raises(AssertionError):
        log.summary("exploded", progress(3, 1, 0.75), 1000)  # not one of rundir.STATUSES


def test_only_rank_0_writes(tmp_path: Path) -> None:
    cfg = load_config(None)
    quiet = RunLog(tmp_path / "other", cfg, is_main=False)
    (tmp_path / "other").mkdir()
    quiet.write_config()
    quiet.epoch([epoch(1, 0.5)])
    quiet.save_best({"x": 1})
    quiet.save_last({"x": 1})
    assert quiet.summary("finished", progress(1, 1, 0.5), 10)["status"] == "finished"  # what rank 0 would write
    assert list((tmp_path / "other").iterdir()) == []
    main = RunLog(tmp_path / "main", cfg)
    (tmp_path / "main").mkdir()
    main.write_config()
    main.epoch([epoch(1, 0.5)])
    main.epoch([epoch(1, 0.5), epoch(2, 0.6)])  # rewritten whole
    assert load_config(tmp_path / "main" / runs.CONFIG) == cfg
    assert runs.RunDir(tmp_path / "main").read_metrics() == [epoch(1, 0.5), epoch(2, 0.6)]


def test_tensorboard_is_an_optional_extra(tiny_overrides: list[str]) -> None:
    cfg = load_config(ROOT / "configs/rnn.yaml", [*tiny_overrides, "train.epochs=1",
                                                  "model.hidden_size=8", "output.tensorboard=true"])
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:
        with pytest.raises(SeqclfError, match=r'pip install "seqclf\[tensorboard\]"'):
            train(cfg)
        assert not list(Path(cfg.output.dir).glob("*/config.yaml"))  # refused before any run dir exists
        return
    run_dir = Path(train(cfg)["run_dir"])
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))


def test_a_run_stopped_in_its_first_epoch_lists_no_checkpoint(tmp_path: Path, data_root: Path) -> None:
    from stops import StopAt

    from seqclf.errors import Interrupted

    overrides = [*tiny_args(data_root, tmp_path / "runs"), "train.epochs=1"]
    with pytest.raises(Interrupted):
        train(load_config(None, [*overrides, "output.name=r"]), stop=StopAt(2))  # epoch 1, step 2: last.pt only
    run = runs.RunDir(tmp_path / "runs" / "r")
    assert run.last.exists() and not run.best.exists()
    assert run.read_summary()["checkpoint"] is None
    done = train(load_config(None, [*overrides, "output.name=done"]))
    assert done["checkpoint"] == str(tmp_path / "runs" / "done" / runs.BEST) and Path(done["checkpoint"]).is_file()
