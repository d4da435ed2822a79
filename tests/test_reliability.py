"""Trustworthy runs: bitwise-exact resume, safe interrupts, atomic files, non-finite losses, clear errors."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers import ROOT, make_dataset, posix_only, process, seqclf_env, write_idx
from stops import StopAt
from test_files import fail_writes
from typer.testing import CliRunner

import seqclf.training.start as training
from seqclf.cli.app import app
from seqclf.config import load_config
from seqclf.errors import Interrupted, TrainingError
from seqclf.store import checkpoint, files
from seqclf.store import rundir as runs
from seqclf.training.start import resume, train
from seqclf.use.evaluate import evaluate_checkpoint

runner = CliRunner()
TIMING = {"seconds", "examples_per_s"}
STEPS = 10  # 500 training examples / batch 50
# 2 layers with dropout (torch RNG), onecycle (stepped per batch), clipping, a shuffled order per epoch
EXACT = ["data.name=idx", "data.val_size=100", "model.hidden_size=12", "model.num_layers=2", "model.dropout=0.25",
         "train.epochs=2", "train.batch_size=50", "train.scheduler=onecycle", "train.lr=0.01", "train.grad_clip=0.5",
         "train.device=cpu", "train.num_threads=1", "seed=5"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("reliability") / "data")


def config(data_root: Path, out: Path, name: str, *extra: str):
    return load_config(None, [*EXACT, f"data.root={data_root}", f"output.dir={out}", f"output.name={name}", *extra])


@pytest.fixture(scope="module")
def reference(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted run every interrupted-and-resumed run must match bit for bit."""
    out = tmp_path_factory.mktemp("reference")
    return Path(train(config(data_root, out, "ref"))["run_dir"])


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
    again = Path(train(config(data_root, tmp_path, "again"))["run_dir"])
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
        train(config(data_root, tmp_path, "run"), stop=StopAt(stops[0]))
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
        train(config(data_root, tmp_path, "r"), stop=StopAt(3, signum=signal.SIGTERM))
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
    longer = Path(train(config(data_root, tmp_path, "two", *common))["run_dir"])
    short = Path(train(config(data_root, tmp_path, "one", *common, "train.epochs=1"))["run_dir"])
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


# ---------------------------------------------------------------- signals


def assert_stopped_by_a_signal_and_resumable(run_dir: Path, code: int, expected: int, stderr: str) -> None:
    """What a signal leaves: its exit status, the resume command, last.pt with its state, no temp files;
    and the resume that finishes the interrupted epoch."""
    assert code == expected, stderr
    assert f"Continue with: seqclf train --resume {run_dir}" in stderr
    assert "Traceback" not in stderr
    payload = checkpoint.load(run_dir / "last.pt")
    assert "state" in payload and runs.RunDir(run_dir).read_summary()["status"] == "interrupted"
    assert not [p for p in run_dir.iterdir() if p.name.endswith(".tmp")]
    target = payload["epoch"] + 1  # finish the interrupted epoch, then stop
    result = runner.invoke(app, ["train", "--resume", str(run_dir), "--set", f"train.epochs={target}", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["status"] == "finished"
    assert [row["epoch"] for row in runs.RunDir(run_dir).read_metrics()] == list(range(1, target + 1))


def long_run_config(tmp_path: Path, data_root: Path, name: str) -> Path:
    """A long CLI run: many epochs of tiny data (6 steps an epoch)."""
    cfg = tmp_path / f"{name}.yaml"
    cfg.write_text(f"data:\n  name: idx\n  root: {data_root}\n  val_size: 100\n  max_train: 300\n"
                   f"model:\n  hidden_size: 8\ntrain:\n  epochs: 100000\n  batch_size: 50\n  device: cpu\n"
                   f"  num_threads: 1\noutput:\n  dir: {tmp_path}\n  name: {name}\n")
    return cfg


@process
@posix_only
def test_a_real_sigterm_to_a_real_process_saves_last_pt_and_exits_143(tmp_path: Path, data_root: Path) -> None:
    run_dir = tmp_path / "long"
    proc = subprocess.Popen([sys.executable, "-m", "seqclf", "train", "--config",
                             str(long_run_config(tmp_path, data_root, run_dir.name))], env=seqclf_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (run_dir / "metrics.jsonl").exists():  # an epoch is saved: the loop has its handlers
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the run never finished an epoch"
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert_stopped_by_a_signal_and_resumable(run_dir, proc.returncode, 143, stderr)


@posix_only  # a signal to this process (on Windows os.kill ends it)
def test_a_real_sigint_saves_last_pt_and_exits_130(tmp_path: Path, data_root: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A real SIGINT to this process, which trains through the CLI with GracefulStop's own handlers: sent
    in epoch 2, step 3 (poll 6 + 1 + 3 of should_stop); the handler, not the test, asks the loop to stop."""
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
        train(config(data_root, tmp_path, "r"), stop=stop)
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
        train(config(data_root, tmp_path, "r", "train.scheduler=none"), stop=StopAt(on_call={STEPS + 1: disk_fills_up}))
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
