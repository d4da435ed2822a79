"""RunDir, the one owner of a run directory: making, opening, finding, the lock, the status, the files
and the resume repairs, on real files in tmp_path."""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from helpers import ROOT, epoch

from seqclf.config import load_config
from seqclf.errors import SeqclfError
from seqclf.store import checkpoint
from seqclf.store import lock as runlock
from seqclf.store.rundir import NameTaken, NotARunDir, RunDir

V1_RUN = ROOT / "tests" / "data" / "v1run"  # a finished 2-epoch run (checkpoint format 1); best epoch 2


@pytest.fixture
def locks() -> Iterator[None]:
    with runlock.session():  # every lock a test takes is released at its end
        yield


@pytest.fixture
def v1_copy(tmp_path: Path) -> RunDir:
    shutil.copytree(V1_RUN, tmp_path / "v1run")
    return RunDir(tmp_path / "v1run")


def test_a_run_dir_shows_and_opens_as_its_path(tmp_path: Path) -> None:
    run_dir = RunDir(str(tmp_path / "r"))
    assert str(run_dir) == str(tmp_path / "r") == os.fspath(run_dir) and RunDir(run_dir) == run_dir
    assert (run_dir.config_path.name, run_dir.metrics_path.name, run_dir.summary_path.name, run_dir.best.name,
            run_dir.last.name, run_dir.tensorboard.name) == ("config.yaml", "metrics.jsonl", "summary.json",
                                                              "best.pt", "last.pt", "tensorboard")


def test_create_makes_a_locked_generated_dir_and_a_second_one_beside_it(tmp_path: Path, locks: None) -> None:
    cfg = load_config(None, [f"output.dir={tmp_path / 'runs'}", "model.cell=gru"])
    first, second = RunDir.create(cfg), RunDir.create(cfg)
    assert first.path.parent == tmp_path / "runs" and first.path.name.startswith("gru-1x128-s0-")
    assert first != second and second.path.is_dir() and first.holder() == os.getpid()
    assert first.exists()  # a run directory once made and locked: a set-up stopped before config.yaml is listed
    assert not RunDir(tmp_path).exists()  # a folder holding neither config.yaml nor a lock is not
    first.write_config(cfg)
    assert RunDir.open(first.path) == first


def test_create_reuses_a_named_dir_only_while_it_is_restartable(tmp_path: Path, locks: None) -> None:
    cfg = load_config(None, [f"output.dir={tmp_path}", "output.name=named"])
    run_dir = RunDir.create(cfg)
    run_dir.write_config(cfg)
    run_dir.write_summary({"status": "running"})
    run_dir.unlock()
    assert RunDir.create(cfg) == run_dir and not run_dir.summary_path.exists()  # set-up leftovers removed
    assert run_dir.config_path.exists()
    run_dir.write_metrics([epoch(1, 0.5)])
    with pytest.raises(NameTaken, match="already exists and holds trained epochs"):
        RunDir.create(cfg)
    assert run_dir.read_metrics() == [epoch(1, 0.5)]


def test_restartable_only_without_a_finished_epoch(tmp_path: Path) -> None:
    run_dir = RunDir(tmp_path)
    assert run_dir.restartable()
    run_dir.metrics_path.write_text("{not json\n")
    assert not run_dir.restartable()  # damaged: do not guess
    run_dir.metrics_path.unlink()
    run_dir.last.write_bytes(b"")
    assert not run_dir.restartable()


def test_open_and_find(tmp_path: Path) -> None:
    with pytest.raises(NotARunDir, match="not a run directory \\(no config.yaml\\)"):
        RunDir.open(tmp_path)
    for path in (tmp_path / "b", tmp_path / "a", tmp_path / "sweep" / "c"):
        path.mkdir(parents=True)
        (path / "config.yaml").write_text("seed: 0\n")
    (tmp_path / "logs").mkdir()
    assert [r.path for r in RunDir.find(tmp_path)] == [tmp_path / "a", tmp_path / "b", tmp_path / "sweep" / "c"]
    assert RunDir.find(tmp_path / "a") == [RunDir(tmp_path / "a")]
    with pytest.raises(SeqclfError, match="no such folder of runs"):
        RunDir.find(tmp_path / "missing")


def test_status_says_how_a_run_ended_when_its_process_is_gone(tmp_path: Path, locks: None) -> None:
    run_dir = RunDir(tmp_path)
    assert run_dir.status() == "failed"  # killed in set-up: no summary.json, no last.pt
    run_dir.last.write_bytes(b"")
    assert run_dir.status() == "interrupted"
    run_dir.write_summary({"status": "running"})
    assert run_dir.status() == "interrupted"  # nobody holds the lock
    run_dir.lock()
    assert run_dir.status() == "running"
    run_dir.write_summary({"status": "finished"})
    assert run_dir.status() == "finished"
    run_dir.summary_path.write_text('{"status": "done"}')
    assert run_dir.status() is None
    run_dir.summary_path.write_text("{")
    assert run_dir.status() is None and run_dir.read_summary() is None


def test_the_files_round_trip_and_damage_is_named(tmp_path: Path) -> None:
    run_dir = RunDir(tmp_path)
    cfg = load_config(None, ["model.cell=lstm"])
    run_dir.write_config(cfg)
    assert run_dir.read_config()["model"]["cell"] == "lstm"
    assert run_dir.read_metrics() == []
    history = [epoch(1, 0.5), epoch(2, float("nan"))]
    run_dir.write_metrics(history)
    assert run_dir.read_metrics() == [history[0], {**history[1], "val_accuracy": None}]  # strict JSON: NaN -> null
    run_dir.metrics_path.write_text(run_dir.metrics_path.read_text() + "[1]\n")
    with pytest.raises(SeqclfError, match="line 3 is not an epoch's metrics object"):
        run_dir.read_metrics()
    with pytest.raises(AssertionError):
        run_dir.write_summary({"status": "done"})


def test_repair_best_rebuilds_it_from_last_pt_holding_the_best_epoch(v1_copy: RunDir) -> None:
    saved = v1_copy.read_last()
    assert v1_copy.repair_best(saved)  # best.pt is there: nothing to do
    v1_copy.best.unlink()
    assert v1_copy.repair_best(saved)
    rebuilt = checkpoint.read(v1_copy.best)
    assert rebuilt.state is None and rebuilt.epoch == saved.epoch == 2
    assert all(torch.equal(rebuilt.model[key], value) for key, value in saved.model.items())


def test_repair_best_changes_nothing_when_the_best_weights_are_lost(v1_copy: RunDir) -> None:
    v1_copy.best.write_bytes(b"truncated")
    later = dataclasses.replace(v1_copy.read_last(), epoch=3)  # last.pt saved after the best epoch
    assert not v1_copy.repair_best(later)
    assert v1_copy.best.read_bytes() == b"truncated"


def test_repair_metrics_rewrites_them_from_last_pt_history(v1_copy: RunDir) -> None:
    history = v1_copy.read_last().history
    assert v1_copy.repair_metrics(history) is None  # they match
    v1_copy.write_metrics(history[:1])
    assert v1_copy.repair_metrics(history) == (f"{v1_copy.metrics_path} did not match last.pt (1 rows, 2 epochs): "
                                               f"rebuilt from last.pt's history")
    v1_copy.metrics_path.write_text("{")
    assert "(damaged rows, 2 epochs)" in v1_copy.repair_metrics(history)
    assert v1_copy.read_metrics() == history
