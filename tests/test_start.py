"""Starting and resuming runs (seqclf/training/start.py): bitwise-exact resume, extending a run, refused changes.

What a signal, a divergence or a full disk leaves behind is tests/test_reliability.py's; stops at a chosen
write, kills and locks are test_recovery.py's and test_lock.py's.
"""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers import STEPS, exact_config, make_dataset
from stops import StopAt
from typer.testing import CliRunner

from seqclf.cli.app import app
from seqclf.config import load_config
from seqclf.errors import Interrupted
from seqclf.store import checkpoint
from seqclf.store import rundir as runs
from seqclf.training.start import resume, train
from seqclf.use.evaluate import evaluate_checkpoint

runner = CliRunner()
TIMING = {"seconds", "examples_per_s"}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("start") / "data")


@pytest.fixture(scope="module")
def reference(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted run every interrupted-and-resumed run must match bit for bit."""
    out = tmp_path_factory.mktemp("reference")
    return Path(train(exact_config(data_root, out, "ref"))["run_dir"])


def values(run_dir: Path) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if k not in TIMING} for row in runs.RunDir(run_dir).read_metrics()]


def assert_equal_nested(a: Any, b: Any, where: str) -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            assert_equal_nested(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_equal_nested(x, y, f"{where}[{i}]")
    else:
        assert a == b, (where, a, b)


def assert_same_run(expected: Path, got: Path) -> None:
    """Bitwise-identical weights, optimizer state, metrics values and eval results."""
    assert values(got) == values(expected) and len(values(got)) == 2
    for name in ("best.pt", "last.pt"):
        a, b = checkpoint.load(expected / name), checkpoint.load(got / name)
        assert_equal_nested(a["model"], b["model"], f"{name} model")
        assert a["epoch"] == b["epoch"]
    a, b = checkpoint.load(expected / "last.pt")["state"], checkpoint.load(got / "last.pt")["state"]
    for key in ("optimizer", "scheduler", "best_accuracy", "best_epoch", "shuffle", "lr"):
        assert_equal_nested(a[key], b[key], f"last.pt state.{key}")
    assert evaluate_checkpoint(got / "best.pt") == {**evaluate_checkpoint(expected / "best.pt"),
                                                    "checkpoint": str(got / "best.pt")}
    keep = ("epochs", "val_accuracy", "best_epoch", "test_accuracy", "test_loss", "parameters", "status")
    summary_a, summary_b = runs.RunDir(expected).read_summary(), runs.RunDir(got).read_summary()
    assert {k: summary_b[k] for k in keep} == {k: summary_a[k] for k in keep}
    assert summary_b["status"] == "finished"


# ---------------------------------------------------------------- exact resume


def test_same_config_and_seed_twice_gives_identical_runs(reference: Path, data_root: Path, tmp_path: Path) -> None:
    again = Path(train(exact_config(data_root, tmp_path, "again"))["run_dir"])
    assert_same_run(reference, again)
    lines = lambda d: [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    assert [{k: v for k, v in r.items() if k not in TIMING} for r in lines(again)] == values(reference)


@pytest.mark.parametrize("stops", [
    pytest.param([3], id="mid-epoch-1"),
    pytest.param([STEPS], id="after-last-step-before-validation"),
    pytest.param([STEPS + 1], id="between-epochs"),
    pytest.param([STEPS + 1 + 6], id="mid-epoch-2"),
    pytest.param([2 * STEPS + 2], id="after-the-last-epoch"),
    pytest.param([4, 9, 1], id="three-interrupts"),
])
def test_interrupted_and_resumed_equals_uninterrupted(reference: Path, data_root: Path, tmp_path: Path,
                                                      stops: list[int]) -> None:
    with pytest.raises(Interrupted) as info:
        train(exact_config(data_root, tmp_path, "run"), stop=StopAt(stops[0]))
    assert info.value.exit_code == 130
    run_dir = tmp_path / "run"
    assert runs.RunDir(run_dir).read_summary()["status"] == "interrupted"
    for later in stops[1:]:  # interrupted again, `later` calls into each resume
        with pytest.raises(Interrupted):
            resume(run_dir, stop=StopAt(later))
    resume(run_dir)
    assert_same_run(reference, run_dir)


def test_interrupt_message_says_where_and_how_to_resume(data_root: Path, tmp_path: Path) -> None:
    with pytest.raises(Interrupted) as info:
        train(exact_config(data_root, tmp_path, "r"), stop=StopAt(3, signum=signal.SIGTERM))
    message = str(info.value)
    assert info.value.exit_code == 143
    assert "SIGTERM" in message and "epoch 1, step 3" in message
    assert f"seqclf train --resume {tmp_path / 'r'}" in message
    state = checkpoint.load(tmp_path / "r" / "last.pt")["state"]
    assert state["step"] == 3 and state["order"].shape == (500,)
    with pytest.raises(Interrupted, match="after epoch 1"):
        resume(tmp_path / "r", stop=StopAt(STEPS - 3 + 1))


def test_extending_a_finished_run_equals_training_longer(data_root: Path, tmp_path: Path) -> None:
    """`--resume --set train.epochs=N` continues exactly (with a schedule that does not span the run)."""
    common = ("model.num_layers=1", "train.scheduler=step", "train.step_size=1", "train.gamma=0.5")
    longer = Path(train(exact_config(data_root, tmp_path, "two", *common))["run_dir"])
    short = Path(train(exact_config(data_root, tmp_path, "one", *common, "train.epochs=1"))["run_dir"])
    result = runner.invoke(app, ["train", "--resume", str(short), "--set", "train.epochs=2"])
    assert result.exit_code == 0, result.output
    assert values(short) == values(longer) and len(values(short)) == 2
    assert_equal_nested(checkpoint.load(short / "last.pt")["model"], checkpoint.load(longer / "last.pt")["model"],
                        "last.pt")
    assert load_config(short / "config.yaml").train.epochs == 2  # the run's config records the extension
    result = runner.invoke(app, ["train", "--resume", str(short), "--set", "train.epochs=1"])
    assert result.exit_code == 2 and "fewer than the 2 epochs already trained" in result.output


def test_resume_refuses_changes_to_what_the_run_computes(reference: Path, data_root: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "ref"
    shutil.copytree(reference, run_dir)
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    for args, fragment in [
        (["--set", "model.hidden_size=8"], "cannot change model.hidden_size"),
        (["--set", "train.lr=0.1", "--set", "seed=1"], "cannot change seed, train.lr"),
        (["--set", "train.epochs=3"], "train.epochs cannot change with scheduler=onecycle"),
        (["--set", "model.hiden_size=8"], "did you mean `model.hidden_size`"),
        (["--config", "configs/lstm.yaml"], "drop --config"),
    ]:
        result = runner.invoke(app, ["train", "--resume", str(run_dir), *args])
        assert result.exit_code == 2 and fragment in result.output, (args, result.output)
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before  # refused: nothing touched
    result = runner.invoke(app, ["train", "--resume", str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and "not a run directory" in result.output
    moved = tmp_path / "moved-data"
    shutil.copytree(data_root, moved)  # where the data lives may change
    result = runner.invoke(app, ["train", "--resume", str(run_dir), "--set", f"data.root={moved}"])
    assert result.exit_code == 0, result.output


def test_resuming_a_finished_run_says_so_and_how_to_train_longer(reference: Path, data_root: Path,
                                                                 tmp_path: Path) -> None:
    """Nothing to do: exit 0, no file written; the way to train longer (a new run under a per-batch schedule)."""
    run_dir = tmp_path / "ref"
    shutil.copytree(reference, run_dir)
    files = lambda: {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in run_dir.iterdir()  # noqa: E731
                     if p.name != ".lock"}  # the lock holds the PID of the last process that held it
    before = files()
    result = runner.invoke(app, ["train", "--resume", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert f"{run_dir} has finished 2/2 epochs; nothing to resume" in result.output
    assert "resuming " not in result.output
    assert f"--set output.name=ref-more --init-from {run_dir / 'best.pt'}" in result.output  # onecycle: a new run
    assert files() == before
    result = runner.invoke(app, ["train", "--resume", str(run_dir), "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout) == runs.RunDir(run_dir).read_summary()
    assert files() == before
    plain = Path(train(exact_config(data_root, tmp_path, "plain", "train.scheduler=none", "train.epochs=1"))["run_dir"])
    result = runner.invoke(app, ["train", "--resume", str(plain)])
    assert result.exit_code == 0, result.output
    assert f"has finished 1/1 epochs; nothing to resume. To train it longer: seqclf train --resume {plain} " \
           f"--set train.epochs=2" in " ".join(result.output.split())
