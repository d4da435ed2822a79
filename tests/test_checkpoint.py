"""Checkpoints are data, never code: safe loading, clear refusals, atomic writes, RNG state."""

from __future__ import annotations

import io
import json
import os
import pathlib
import pickle
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from helpers import ROOT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from seqclf.cli.app import app
from seqclf.config import load_config
from seqclf.store import checkpoint
from seqclf.store.checkpoint import CheckpointError
from seqclf.training import rng
from seqclf.training.optim import build_optimizer, build_scheduler
from seqclf.training.start import train

runner = CliRunner()
PLAIN = (str, int, float, bool, type(None))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished tiny run (2 layers with dropout, adamw, onecycle): its best.pt and last.pt."""
    import helpers

    tmp = tmp_path_factory.mktemp("ckpt")
    data = helpers.make_dataset(tmp / "data")
    cfg = load_config(None, ["data.name=idx", f"data.root={data}", "data.val_size=100", "model.hidden_size=8",
                             "model.num_layers=2", "model.dropout=0.2", "train.epochs=1", "train.batch_size=100",
                             "train.optimizer=adamw", "train.scheduler=onecycle", "train.device=cpu",
                             f"output.dir={tmp / 'runs'}", "output.name=r"])
    return Path(train(cfg)["run_dir"])


def plain_types(value: Any, where: str = "checkpoint") -> list[str]:
    """Every place in a nested value that is not a tensor or plain Python data."""
    if isinstance(value, torch.Tensor) or isinstance(value, PLAIN):
        return []
    if isinstance(value, (list, tuple)):
        return [bad for i, item in enumerate(value) for bad in plain_types(item, f"{where}[{i}]")]
    if isinstance(value, dict):
        return [bad for k, item in value.items()
                for bad in ([] if isinstance(k, PLAIN) else [f"{where} key {k!r}"]) + plain_types(item, f"{where}.{k}")]
    return [f"{where}: {type(value).__name__}"]


# ---------------------------------------------------------------- what a checkpoint holds


def test_checkpoints_hold_only_tensors_and_plain_data(run_dir: Path) -> None:
    for name in ("best.pt", "last.pt"):
        # plain torch.load with weights_only=True and no allow-listing of any kind
        payload = torch.load(run_dir / name, weights_only=True)
        assert plain_types(payload) == []
        assert payload["format"] == checkpoint.FORMAT and payload["version"] == checkpoint.VERSION
        assert set(payload) >= {"config", "model", "data", "epoch", "history"}
    state = torch.load(run_dir / "last.pt", weights_only=True)["state"]
    assert set(state) >= {"optimizer", "scheduler", "step", "order", "best_accuracy", "best_epoch", "rng", "shuffle",
                          "lr", "sums"}
    assert set(state["rng"]) >= {"torch", "python", "numpy"}
    assert isinstance(state["rng"]["torch"], torch.Tensor) and isinstance(state["shuffle"], torch.Tensor)
    assert "state" not in torch.load(run_dir / "best.pt", weights_only=True)  # best.pt: weights for eval


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
@pytest.mark.parametrize("scheduler", ["none", "cosine", "step", "onecycle"])
def test_every_optimizer_and_scheduler_state_is_plain(optimizer: str, scheduler: str) -> None:
    cfg = load_config(None, [f"train.optimizer={optimizer}", f"train.scheduler={scheduler}"])
    model = torch.nn.LSTM(3, 4)
    opt = build_optimizer(cfg.train, model.parameters())
    sched = build_scheduler(cfg.train, opt, steps_per_epoch=5)
    model(torch.randn(2, 1, 3))[0].sum().backward()
    opt.step()
    if sched is not None:
        sched.step()
    state = {"optimizer": opt.state_dict(), "scheduler": sched.state_dict() if sched else None}
    assert plain_types(state) == []
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    torch.load(buffer, weights_only=True)  # loads with no allow-listing


def test_rng_state_round_trips_through_a_safe_load(tmp_path: Path) -> None:
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    random.gauss(0, 1)  # leaves a cached gaussian in python's state
    checkpoint.save(tmp_path / "rng.pt", {"config": {}, "model": {}, "data": {},
                                          "rng": rng.rng_state()})
    expected = (random.random(), random.gauss(0, 1), np.random.rand(3).tolist(), torch.rand(3))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    rng.set_rng_state(checkpoint.load(tmp_path / "rng.pt")["rng"])
    again = (random.random(), random.gauss(0, 1), np.random.rand(3).tolist(), torch.rand(3))
    assert expected[:3] == again[:3] and torch.equal(expected[3], again[3])


# ---------------------------------------------------------------- refusing code


class TouchOnLoad:
    """Unpickling this would create a file: the classic code-execution payload."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return pathlib.Path.touch, (pathlib.Path(self.marker),)


class SystemOnLoad(TouchOnLoad):
    def __reduce__(self) -> tuple:
        return os.system, (f"touch {self.marker}",)


def malicious_files(tmp_path: Path) -> list[tuple[Path, Path]]:
    """(checkpoint, marker) pairs: torch.save archives and a raw pickle whose loading would touch `marker`."""
    made = []
    for i, kind in enumerate((TouchOnLoad, SystemOnLoad)):
        marker = tmp_path / f"pwned-{i}"
        path = tmp_path / f"evil-{i}.pt"
        torch.save({"format": checkpoint.FORMAT, "version": 1, "config": {}, "model": {"w": kind(marker)},
                    "data": {}}, path)
        made.append((path, marker))
    marker = tmp_path / "pwned-raw"
    (tmp_path / "evil-raw.pt").write_bytes(pickle.dumps({"x": SystemOnLoad(marker)}, protocol=2))
    made.append((tmp_path / "evil-raw.pt", marker))
    for path, marker in made:  # sanity: the payloads really do run code when unpickled unsafely
        if path.name != "evil-raw.pt":
            torch.load(path, weights_only=False)
        else:
            pickle.loads(path.read_bytes())
        assert marker.exists()
        marker.unlink()
    return made


def test_a_checkpoint_that_would_run_code_is_refused(run_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    for path, marker in malicious_files(tmp_path):
        with pytest.raises(CheckpointError, match="refused") as info:
            checkpoint.load(path)
        assert str(path) in str(info.value) and "weights_only=False" not in str(info.value)
        result = runner.invoke(app, ["eval", str(path)])
        assert result.exit_code == 2 and "refused" in result.output, result.output
        assert "Traceback" not in result.output
        assert not marker.exists(), "loading ran code from the checkpoint"
        shutil.copy(path, copy / "last.pt")  # the same file as a run's last.pt: resume refuses it too
        result = runner.invoke(app, ["train", "--resume", str(copy)])
        assert result.exit_code == 2 and "refused" in result.output and not marker.exists(), result.output


def test_refused_even_when_the_object_is_harmless(tmp_path: Path) -> None:
    """No fallback to unsafe loading: anything beyond tensors and plain data is refused, harmful or not."""
    from fractions import Fraction

    torch.save({"format": checkpoint.FORMAT, "version": 1, "config": {}, "model": {}, "data": {},
                "extra": Fraction(1, 3)}, tmp_path / "odd.pt")
    with pytest.raises(CheckpointError, match="refused.*fractions.Fraction"):
        checkpoint.load(tmp_path / "odd.pt")


def test_every_load_in_seqclf_is_weights_only() -> None:
    """The one safe loader is the only way in: no torch.load without weights_only=True, no pickle.load."""
    for path in (ROOT / "seqclf").rglob("*.py"):
        text = path.read_text()
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            assert "weights_only=True" in call, f"{path.name}: {call}"
        assert not re.search(r"pickle\.loads?\(|weights_only=False|safe_globals", text), path.name
    for module in ("use/evaluate.py", "training/start.py"):  # every checkpoint they read comes through checkpoint.read
        assert "checkpoint.read(" in (ROOT / "seqclf" / module).read_text()


def test_torch_older_than_2_10_is_refused(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for old in ("2.5.1", "2.9.1+cu128", "1.13.0"):
        with pytest.raises(CheckpointError, match="CVE-2026-24747"):
            checkpoint.require_safe_torch(old)
    for ok in ("2.10.0", "2.14.1+cu130", "3.0.0a0"):
        checkpoint.require_safe_torch(ok)
    checkpoint.load(run_dir / "best.pt")  # the installed torch is new enough
    monkeypatch.setattr(torch, "__version__", "2.9.1")
    with pytest.raises(CheckpointError, match="too old to load checkpoints safely"):
        checkpoint.load(run_dir / "best.pt")
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'"torch>=2\.(1[0-9]|[2-9][0-9])', pyproject)


# ---------------------------------------------------------------- malformed files


def malformed(tmp_path: Path, good: bytes) -> dict[str, tuple[Path, str]]:
    """name -> (path, expected fragment of the message)."""
    cases: dict[str, tuple[bytes | None, str]] = {
        "empty": (b"", "not a readable seqclf checkpoint"),
        "text": (b"model: lstm\n", "not a readable seqclf checkpoint"),
        "random": (bytes(random.Random(0).randrange(256) for _ in range(999)), "not a readable seqclf checkpoint"),
        "truncated-header": (good[:10], "not a readable seqclf checkpoint"),
        "truncated-half": (good[:len(good) // 2], "not a readable seqclf checkpoint"),
        "truncated-tail": (good[:-7], "not a readable seqclf checkpoint"),
        "raw-pickle-list": (pickle.dumps([1, 2, 3]), "not a readable seqclf checkpoint"),
    }
    for name, payload, fragment in [
        ("foreign-dict", {"state_dict": {"w": torch.zeros(2)}}, "not a seqclf checkpoint"),
        ("foreign-tensor", torch.zeros(3), "not a seqclf checkpoint"),
        ("newer-version", {**torch.load(io.BytesIO(good), weights_only=True), "version": 999}, "version 999, newer"),
        ("string-version", {"format": checkpoint.FORMAT, "version": "1"}, "not a number"),
        ("incomplete", {"format": checkpoint.FORMAT, "version": 1}, "incomplete"),
        ("bad-data", {"format": checkpoint.FORMAT, "version": 1, "config": {}, "model": {}, "data": {"mean": 0}},
         "damaged checkpoint: data.std"),
    ]:
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        cases[name] = (buffer.getvalue(), fragment)
    out = {}
    for name, (data, fragment) in cases.items():
        path = tmp_path / f"{name}.pt"
        path.write_bytes(data)
        out[name] = (path, fragment)
    out["missing"] = (tmp_path / "nope" / "best.pt", "no such checkpoint")
    out["folder"] = (tmp_path, "is a folder")
    return out


def test_every_malformed_checkpoint_gets_a_clear_message_and_exit_2(run_dir: Path, tmp_path: Path) -> None:
    good = (run_dir / "best.pt").read_bytes()
    for name, (path, fragment) in malformed(tmp_path, good).items():
        with pytest.raises(CheckpointError) as info:
            checkpoint.read(path)
        message = str(info.value)
        assert fragment in message and str(path) in message, (name, message)
        assert "\n" not in message and "Traceback" not in message and "weights_only" not in message, (name, message)
        result = runner.invoke(app, ["eval", str(path)])
        assert result.exit_code == 2, (name, result.output)
        assert fragment in result.output and result.exception.__class__ is SystemExit, name
        assert "Traceback" not in result.output


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=8),
       cut=st.one_of(st.none(), st.floats(0, 1)))
def test_mutated_checkpoints_never_escape_as_other_errors(run_dir: Path, tmp_path: Path, edits: list,
                                                          cut: float | None) -> None:
    """Flipped bytes and truncation at any point: either it still loads, or a CheckpointError, nothing else."""
    data = bytearray((run_dir / "last.pt").read_bytes())
    for where, value in edits:
        data[int(where * len(data))] = value
    if cut is not None:
        data = data[:int(cut * len(data))]
    path = tmp_path / "mutated.pt"
    path.write_bytes(bytes(data))
    try:
        payload = checkpoint.load(path)
    except CheckpointError as exc:
        assert str(path) in str(exc)
    else:
        assert payload["format"] == checkpoint.FORMAT


def test_a_damaged_state_is_refused_on_resume(run_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    summary = json.loads((copy / "summary.json").read_text())  # stopped before its final scoring: work left
    (copy / "summary.json").write_text(json.dumps({**summary, "status": "interrupted"}))
    payload = torch.load(copy / "last.pt", weights_only=True)
    del payload["state"]["optimizer"]
    torch.save(payload, copy / "last.pt")
    result = runner.invoke(app, ["train", "--resume", str(copy)])
    assert result.exit_code == 2 and "training state is incomplete" in result.output, result.output
    torch.save({k: v for k, v in payload.items() if k != "state"}, copy / "last.pt")
    result = runner.invoke(app, ["train", "--resume", str(copy)])
    assert result.exit_code == 2 and "no training state" in result.output, result.output


# ---------------------------------------------------------------- atomic writes


# ---------------------------------------------------------------- older formats

V1_RUN = ROOT / "tests" / "data" / "v1run"  # written by seqclf 0.1.0 (checkpoint format version 1)


def test_a_version_1_run_still_evaluates_and_resumes(tmp_path: Path) -> None:
    """Its data: make_dataset(n_train=120, n_test=40, seed=5); the numbers are what 0.1.0 itself computed."""
    import helpers

    data = helpers.make_dataset(tmp_path / "data", n_train=120, n_test=40, seed=5)
    saved = checkpoint.read(V1_RUN / "best.pt")
    assert torch.load(V1_RUN / "best.pt", weights_only=True)["version"] == 1
    assert saved.data.class_names == tuple("0123456789") and (saved.data.height, saved.data.width) == (28, 28)
    result = helpers.cli_json("eval", str(V1_RUN / "best.pt"), "--set", f"data.root={data}")
    # 0.1.0's numbers to float32 precision: CPUs with other vector units (AVX2, AVX-512) differ in the last bits
    assert result["accuracy"] == 0.2 and result["loss"] == pytest.approx(2.1703680038452147, rel=1e-6)
    assert result["data_warnings"] == [] and result["pixel_stats"]["trained"] is None  # recorded since 0.2
    run = tmp_path / "v1run"
    shutil.copytree(V1_RUN, run)
    helpers.cli_json("train", "--resume", str(run), "--set", "train.epochs=3", "--set", f"data.root={data}")
    row = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    as_resumed_by_0_1_0 = (2.175564317703247, 2.0379779815673826, 0.445541901247842)
    assert row["epoch"] == 3
    assert (row["train_loss"], row["val_loss"], row["grad_norm"]) == pytest.approx(as_resumed_by_0_1_0, rel=1e-5)
