"""The reading trace (seqclf trace) and eval's accuracy_by_step and calibration: what a step's probabilities
mean, agreement with predict and eval, bad inputs, bidirectional models, the ECE's arithmetic."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import cli_json, make_dataset, random_checkpoint
from PIL import Image
from typer.testing import CliRunner

from seqclf import Predictor
from seqclf.cli.app import app
from seqclf.config import load_config
from seqclf.data.idx import read_idx
from seqclf.model.classifier import SequenceClassifier
from seqclf.use.calibration import calibration
from seqclf.use.evaluate import evaluate_checkpoint

runner = CliRunner()


@pytest.mark.parametrize("overrides", [["model.cell=lstm"], ["model.cell=gru"], ["model.cell=rnn"],
                                       ["model.proj_size=6"], ["model.num_layers=2"], ["model.bidirectional=true"],
                                       ["model.cell=gru", "model.num_layers=2", "model.bidirectional=true"]])
@pytest.mark.parametrize("impl", ["fused", "cell", "scratch"])
def test_the_probabilities_after_step_k_are_the_prediction_on_the_first_k_steps(impl: str,
                                                                                 overrides: list[str]) -> None:
    cfg = load_config(None, ["model.hidden_size=12", f"model.impl={impl}", *overrides])
    torch.manual_seed(0)
    model = SequenceClassifier(cfg.model, 5, 10).eval()
    x = torch.randn(4, 9, 5)  # (B, T, F)
    with torch.no_grad():
        by_step = model.logits_by_step(x)  # (B, T, C)
        alone = torch.stack([model(x[:, :k]) for k in range(1, 10)], dim=1)  # the first k steps, nothing after
        assert by_step.shape == (4, 9, 10)
        torch.testing.assert_close(by_step, alone, rtol=1e-5, atol=1e-6)
        assert torch.equal(by_step[:, -1], model(x))  # the last step is forward() itself, to the bit


def test_the_three_implementations_trace_alike() -> None:
    x = torch.randn(3, 28, 28)  # (B, T, F)
    settings = ["model.hidden_size=16", "model.proj_size=8", "model.num_layers=2"]
    fused = SequenceClassifier(load_config(None, settings).model, 28, 10).eval()
    traces = []
    for impl in ("fused", "cell", "scratch"):
        model = SequenceClassifier(load_config(None, [*settings, f"model.impl={impl}"]).model, 28, 10).eval()
        model.load_state_dict(fused.state_dict())  # every impl holds the same parameters under the same names
        with torch.no_grad():
            traces.append(model.logits_by_step(x))
    torch.testing.assert_close(traces[1], traces[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(traces[2], traces[0], rtol=1e-4, atol=1e-5)


def test_trace_agrees_with_predict_and_reports_every_step(trained: tuple[Path, Path], tmp_path: Path) -> None:
    checkpoint, root = trained
    batch = read_idx(root / "t10k-images-idx3-ubyte").numpy()[:6]
    np.save(tmp_path / "six.npy", batch)
    traced = cli_json("trace", str(checkpoint), str(tmp_path / "six.npy"))
    predicted = cli_json("predict", str(checkpoint), str(tmp_path / "six.npy"))
    assert set(traced) == {"checkpoint", "sequence", "step", "steps", "method", "class_names", "traces", "errors"}
    assert (traced["sequence"], traced["step"], traced["steps"], traced["method"]) == ("rows", "row", 28, "one pass")
    assert traced["errors"] == [] and len(traced["traces"]) == 6
    probabilities = Predictor.from_checkpoint(checkpoint).probabilities(batch)  # (6, C)
    for trace, prediction, row in zip(traced["traces"], predicted["predictions"], probabilities):
        steps = np.array(trace["probabilities"])  # (T, C)
        assert steps.shape == (28, 10)
        np.testing.assert_allclose(steps.sum(1), 1.0, rtol=1e-5)
        np.testing.assert_allclose(steps[-1], row, rtol=1e-6, atol=1e-7)  # the last step is predict's answer
        named = ("input", "predicted_label", "predicted_class")  # the names predict uses, for the same thing
        assert [trace[key] for key in named] == [prediction[key] for key in named]
        assert (trace["label"], trace["class"]) == (trace["predicted_label"], trace["predicted_class"])  # deprecated
        assert trace["probability"] == pytest.approx(prediction["probability"], rel=1e-6)
        top = steps.argmax(1)
        assert 1 <= trace["decided_at"] <= 28 and (top[trace["decided_at"] - 1:] == trace["predicted_label"]).all()
        assert trace["decided_at"] == 1 or top[trace["decided_at"] - 2] != trace["predicted_label"]


def test_trace_table_picture_and_bad_inputs(trained: tuple[Path, Path], tmp_path: Path) -> None:
    checkpoint, root = trained
    np.save(tmp_path / "two.npy", read_idx(root / "t10k-images-idx3-ubyte").numpy()[:2])
    (tmp_path / "notes.png").write_text("not an image")
    picture = tmp_path / "trace.png"
    args = ["trace", str(checkpoint), str(tmp_path / "two.npy"), str(tmp_path / "missing.png"),
            str(tmp_path / "notes.png")]
    shown = runner.invoke(app, [*args, "-o", str(picture), "--every", "7", "--top-k", "2"])
    assert shown.exit_code == 2 and "Traceback" not in shown.output
    assert "missing.png" in shown.stderr and "notes.png" in shown.stderr
    assert shown.stdout.count("rows read") == 2 and "guess 2" in shown.stdout and "guess 3" not in shown.stdout
    for k in ("7", "14", "21", "28"):
        assert f"\n{k.rjust(9)}  " in shown.stdout, shown.stdout
    with Image.open(picture) as image:
        assert image.format == "PNG" and image.width > 300
    printed = runner.invoke(app, [*args, "--json"])
    assert printed.exit_code == 2
    result = json.loads(printed.stdout)
    assert len(result["traces"]) == 2 and [e["input"] for e in result["errors"]] == [
        str(tmp_path / "missing.png"), str(tmp_path / "notes.png")]
    refused = runner.invoke(app, ["trace", str(checkpoint), str(tmp_path / "two.npy"), "-o", str(tmp_path / "t.txt")])
    assert refused.exit_code == 2 and "t.txt" in refused.stderr and "Traceback" not in refused.output


def test_eval_adds_accuracy_by_step_and_calibration(trained: tuple[Path, Path]) -> None:
    checkpoint, _ = trained
    result = evaluate_checkpoint(checkpoint)
    assert (result["sequence"], result["step"], result["accuracy_by_step_note"]) == ("rows", "row", None)
    by_step = result["accuracy_by_step"]
    assert len(by_step) == 28 and by_step[-1] == result["accuracy"]  # exactly: the same logits
    assert all(0.0 <= a <= 1.0 for a in by_step)
    bins = result["calibration"]["bins"]
    assert len(bins) == 15 and sum(b["n"] for b in bins) == result["n"]
    assert 0.0 <= result["calibration"]["ece"] <= 1.0
    printed = cli_json("eval", str(checkpoint))
    assert printed["accuracy_by_step"] == by_step and printed["calibration"] == result["calibration"]
    shown = runner.invoke(app, ["eval", str(checkpoint)])
    assert shown.exit_code == 0
    assert "accuracy after 7/14/21/28 of 28 rows read: " in shown.stdout and "ECE" in shown.stdout
    assert f"{by_step[-1]:.3f}; calibration: ECE {result['calibration']['ece']:.4f} (15 bins)" in shown.stdout


def test_bidirectional_models_trace_by_prefix_runs(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "data", n_train=100, n_test=40)
    rows = random_checkpoint(tmp_path / "rows" / "best.pt", "model.bidirectional=true")
    result = evaluate_checkpoint(rows, [f"data.root={root}"])
    assert len(result["accuracy_by_step"]) == 28 and result["accuracy_by_step"][-1] == result["accuracy"]
    images = read_idx(root / "t10k-images-idx3-ubyte").numpy()[:3]
    predictor = Predictor.from_checkpoint(rows)
    by_step = torch.softmax(predictor.logits_by_step(images), dim=2).numpy()
    np.testing.assert_allclose(by_step[:, -1], predictor.probabilities(images), rtol=1e-6, atol=1e-7)
    pixels = random_checkpoint(tmp_path / "pixels" / "best.pt", "model.bidirectional=true", "data.sequence=pixels")
    result = evaluate_checkpoint(pixels, [f"data.root={root}"])
    assert result["accuracy_by_step"] is None and "784 prefix runs" in result["accuracy_by_step_note"]
    assert result["step"] == "pixel" and result["calibration"]["ece"] is not None


def test_calibration_bins_and_expected_error() -> None:
    confidence = np.array([0.0, 0.05, 0.95, 0.95, 1.0, 0.5, 0.5])
    correct = np.array([False, True, True, False, True, True, True])
    result = calibration(confidence, correct, bins=10)
    counts = [b["n"] for b in result["bins"]]
    assert counts == [2, 0, 0, 0, 2, 0, 0, 0, 0, 3]  # (0, 0.1] with 0 itself; 0.5 in (0.4, 0.5]; 1.0 in the last
    assert result["bins"][1]["accuracy"] is None and result["bins"][9]["accuracy"] == pytest.approx(2 / 3)
    expected = (2 / 7) * abs(0.5 - 0.025) + (2 / 7) * abs(1.0 - 0.5) + (3 / 7) * abs(2 / 3 - (0.95 + 0.95 + 1.0) / 3)
    assert result["ece"] == pytest.approx(expected)
    perfect = calibration(np.array([1.0, 1.0]), np.array([True, True]))
    assert perfect["ece"] == 0.0 and len(perfect["bins"]) == 15
    assert calibration(np.zeros(0), np.zeros(0, bool))["ece"] is None
