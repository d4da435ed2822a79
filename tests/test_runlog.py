"""RunLog: summary.json says only what the run directory's files hold, whichever write fails."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
import torch
from helpers import make_dataset, tiny_args

from seqclf.config import load_config
from seqclf.errors import TrainingError
from seqclf.store import files
from seqclf.store import rundir as runs
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
