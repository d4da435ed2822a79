"""`seqclf export`: ONNX (in onnxruntime) and pt2 (torch.export.load) agree with Predictor.probabilities."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import make_dataset, random_checkpoint
from typer.testing import CliRunner

from seqclf import Predictor
from seqclf.cli.app import app
from seqclf.data.idx import read_idx

runner = CliRunner()
CASES = [(cell, bidirectional) for cell in ("rnn", "lstm", "gru") for bidirectional in (False, True)]
SIZE = 12  # 12x12 images: 12 steps a sequence, so the exports (which unroll them) stay quick


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Two-layer models of every cell, one and two directions, and a projected LSTM read by columns, for
    SIZE x SIZE images: randomly initialised (export parity needs weights, not training)."""
    out = tmp_path_factory.mktemp("export-checkpoints")
    found = {case: random_checkpoint(out / f"{case[0]}-{case[1]}.pt", f"model.cell={case[0]}",
                                     f"model.bidirectional={str(case[1]).lower()}", "model.num_layers=2",
                                     "model.hidden_size=8", seed=n, size=SIZE)
             for n, case in enumerate(CASES)}
    found["proj"] = random_checkpoint(out / "proj.pt", "model.proj_size=4", "data.sequence=columns", size=SIZE)
    return found


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """The tiny data's test split: (200, SIZE, SIZE) uint8."""
    root = make_dataset(tmp_path_factory.mktemp("export-data"), n_train=10, size=SIZE)
    return read_idx(root / "t10k-images-idx3-ubyte").numpy()


def export(checkpoint: Path, output: Path, format: str) -> dict:
    result = runner.invoke(app, ["export", str(checkpoint), "-o", str(output), "--format", format, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.parametrize("case", [*CASES, "proj"])
def test_onnx_matches_predictor_on_the_test_split(case, checkpoints: dict, images: np.ndarray, tmp_path: Path) -> None:
    onnxruntime = pytest.importorskip("onnxruntime")
    output = tmp_path / "model.onnx"
    export(checkpoints[case], output, "onnx")
    expected = Predictor.from_checkpoint(checkpoints[case]).probabilities(images)
    session = onnxruntime.InferenceSession(str(output), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["pixels"]
    for n in (1, 7, len(images)):  # N is free
        logits, probabilities = session.run(None, {"pixels": images[:n].astype(np.float32)})
        assert probabilities.shape == (n, 10)
        np.testing.assert_allclose(probabilities, expected[:n], rtol=0, atol=1e-4)
        np.testing.assert_allclose(torch.softmax(torch.from_numpy(logits), 1).numpy(), probabilities, atol=1e-6)
    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["class_names"]) == [str(k) for k in range(10)]
    assert json.loads(meta["config"])["model"]["num_layers"] == (1 if case == "proj" else 2)


@pytest.mark.parametrize("case", [*[case for case in CASES if case[1]], "proj"])
def test_pt2_reloads_and_matches_predictor_for_any_batch_size(case, checkpoints: dict, images: np.ndarray,
                                                               tmp_path: Path) -> None:
    output = tmp_path / "model.pt2"
    export(checkpoints[case], output, "pt2")
    expected = Predictor.from_checkpoint(checkpoints[case]).probabilities(images)
    module = torch.export.load(output).module()
    for n in (0, 1, len(images)):  # N is free, 0 included (the docs say any N)
        with torch.no_grad():
            logits, probabilities = module(torch.from_numpy(images[:n]).float())
        assert logits.shape == probabilities.shape == (n, 10)
        np.testing.assert_allclose(probabilities.numpy(), expected[:n], rtol=0, atol=1e-4)


def test_export_errors_write_nothing(checkpoints: dict, tmp_path: Path, monkeypatch) -> None:
    checkpoint = checkpoints[CASES[0]]
    cases = [(["-o", str(tmp_path / "no" / "such" / "m.onnx")], "does not exist"),
             (["-o", str(tmp_path), "--format", "onnx"], "is a folder"),
             (["-o", str(tmp_path / "m.x"), "--format", "tflite"], "choose one of onnx, pt2")]
    for args, message in cases:
        result = runner.invoke(app, ["export", str(checkpoint), *args])
        assert result.exit_code == 2 and message in result.stderr, result.output
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if the extra were not installed
    result = runner.invoke(app, ["export", str(checkpoint), "-o", str(tmp_path / "m.onnx")])
    assert result.exit_code == 2 and 'pip install "seqclf[export]"' in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize("format", ["onnx", "pt2"])
def test_export_of_a_model_failing_without_a_message(format: str, checkpoints: dict, tmp_path: Path,
                                                     monkeypatch) -> None:
    """An exporter's exception with an empty message still gives a one-line error (its type), not IndexError."""
    from seqclf.use import export as export_module

    def fails(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError  # str() of it is ""

    monkeypatch.setattr(export_module.Exportable, "forward", fails)
    result = runner.invoke(app, ["export", str(checkpoints[CASES[0]]), "-o", str(tmp_path / f"m.{format}"),
                                 "--format", format])
    assert result.exit_code == 2, result.output
    assert "NotImplementedError" in result.stderr and "nothing was written" in result.stderr.lower()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_checkpoint_with_nan_weights_is_refused_naming_the_checkpoint(checkpoints: dict, tmp_path: Path) -> None:
    from helpers import changed_checkpoint

    def poison(payload: dict) -> None:
        next(iter(payload["model"].values())).view(-1)[0] = float("nan")

    broken = changed_checkpoint(checkpoints[("gru", False)], tmp_path / "nan.pt", poison)
    result = runner.invoke(app, ["export", broken, "-o", str(tmp_path / "model.pt2"), "--format", "pt2"])
    assert result.exit_code == 2 and "nan.pt: its weights hold NaN" in result.output
    assert "differs" not in result.output and not (tmp_path / "model.pt2").exists()


def test_export_writes_through_a_link_and_refuses_what_is_not_a_regular_file(checkpoints: dict,
                                                                             tmp_path: Path) -> None:
    import os
    import stat

    checkpoint = str(checkpoints[CASES[0]])
    (tmp_path / "models").mkdir()
    (tmp_path / "latest.pt2").symlink_to(tmp_path / "models" / "v1.pt2")
    result = runner.invoke(app, ["export", checkpoint, "-o", str(tmp_path / "latest.pt2"), "--format", "pt2"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "latest.pt2").is_symlink() and (tmp_path / "models" / "v1.pt2").stat().st_size > 0
    os.mkfifo(tmp_path / "pipe")
    result = runner.invoke(app, ["export", checkpoint, "-o", str(tmp_path / "pipe"), "--format", "pt2"])
    assert result.exit_code == 2 and f"-o {tmp_path / 'pipe'}: not a regular file (a FIFO)" in result.stderr
    assert stat.S_ISFIFO(os.lstat(tmp_path / "pipe").st_mode)


def test_export_to_a_folder_it_cannot_write_says_so_before_any_work(checkpoints: dict, monkeypatch) -> None:
    from seqclf.use import export as export_module

    def no_work(*args: object, **kwargs: object) -> None:
        raise AssertionError("the checkpoint was loaded for an output that cannot be written")

    monkeypatch.setattr(export_module.Predictor, "from_checkpoint", no_work)
    result = runner.invoke(app, ["export", str(checkpoints[CASES[0]]), "-o", "/sys/model.pt2", "--format", "pt2"])
    assert result.exit_code == 2 and "-o /sys/model.pt2: could not be written" in result.stderr, result.output
    assert "Choose another path with -o" in result.stderr and "output.dir" not in result.stderr


@pytest.mark.parametrize("case", [CASES[2], "proj"])
def test_onnx_models_take_a_batch_of_zero_images(case, checkpoints: dict, tmp_path: Path) -> None:
    """(pt2's batch of zero: test_pt2_reloads_and_matches_predictor_for_any_batch_size)"""
    import subprocess

    from helpers import ROOT

    export(checkpoints[case], tmp_path / "m.onnx", "onnx")
    # onnxruntime aborted the process on an empty batch: run it in one of its own
    probe = ("import sys, numpy as np, onnxruntime as ort\n"
             "s = ort.InferenceSession(sys.argv[1], providers=['CPUExecutionProvider'])\n"
             f"print([o.shape for o in s.run(None, {{'pixels': np.zeros((0, {SIZE}, {SIZE}), np.float32)}})])\n")
    done = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "m.onnx")], capture_output=True,
                          text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0 and done.stdout.strip() == "[(0, 10), (0, 10)]", done.stderr[-500:]
