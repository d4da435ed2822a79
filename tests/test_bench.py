"""`seqclf bench` and scripts/bench.sh: output shape on tiny data, the FLOP count against hand counts."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import pytest
import torch
from helpers import ROOT, posix_only, run_script, set_args
from typer.testing import CliRunner

from seqclf.cli.app import app
from seqclf.config import ModelConfig
from seqclf.data.datasets import load_data
from seqclf.data.files import load_arrays
from seqclf.model.classifier import SequenceClassifier
from seqclf.use.bench import TorchvisionStyle
from seqclf.use.flops import MATMUL_SIZES, forward_flops, train_flops

runner = CliRunner()
# bench times a square matmul for the peak every round: 1024 on a CPU is ~20 GFLOP a run, seconds of a shared
# machine; these tests check the fields and the table, which any size gives, so 64 (here and in bench.sh's runs)
SMALL_MATMUL = 64


@pytest.fixture(autouse=True)
def small_matmul(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(MATMUL_SIZES, "cpu", SMALL_MATMUL)
FIELDS = ("train_examples_per_s", "eval_examples_per_s", "flops_per_example", "achieved_gflops", "peak_gflops",
          "efficiency", "loop_efficiency")


# ---------------------------------------------------------------- FLOPs

# Hand counts, T=5 steps of I=3 features, hidden H=4, C=2 classes; a multiply-add is 2 FLOPs.
HAND_COUNTS = [
    # RNN: per step W_ih (4x3) x + W_hh (4x4) h = 28 MACs -> 56 FLOPs, x5 = 280; head 4x2 = 8 MACs -> 16
    (dict(cell="rnn", hidden_size=4), 280 + 16),
    # LSTM: 4 gates: (16x3) x + (16x4) h = 112 MACs -> 224, x5 = 1120; head 16
    (dict(cell="lstm", hidden_size=4), 1120 + 16),
    # GRU, 2 layers, bidirectional: layer 0 per direction (12x3 + 12x4) = 84 MACs -> 168 x5 = 840;
    # layer 1 reads both directions (8 features): (12x8 + 12x4) = 144 MACs -> 288 x5 = 1440;
    # two directions: 2 * (840 + 1440) = 4560; head (8 -> 2) = 16 MACs -> 32
    (dict(cell="gru", hidden_size=4, num_layers=2, bidirectional=True), 4560 + 32),
    # LSTM with proj_size 2: gates (16x3 + 16x2) = 80 MACs -> 160 x5 = 800; projection W_hr (2x4) = 8 MACs
    # -> 16 x5 = 80; head (2 -> 2) = 4 MACs -> 8
    (dict(cell="lstm", hidden_size=4, proj_size=2), 800 + 80 + 8),
]


@pytest.mark.parametrize(("fields", "expected"), HAND_COUNTS)
def test_forward_flops_match_hand_counts(fields: dict, expected: int) -> None:
    cfg = ModelConfig(**fields)
    assert forward_flops(cfg, input_size=3, seq_len=5, num_classes=2) == expected
    assert train_flops(cfg, input_size=3, seq_len=5, num_classes=2) == 3 * expected


@pytest.mark.parametrize("fields", [dict(cell="lstm", hidden_size=16, num_layers=3, bidirectional=True),
                                    dict(cell="gru", hidden_size=7, num_layers=2),
                                    dict(cell="rnn", hidden_size=5, bidirectional=True, bias=False),
                                    dict(cell="lstm", hidden_size=12, proj_size=5, num_layers=2, bidirectional=True)])
def test_forward_flops_use_every_weight_once_per_step(fields: dict) -> None:
    """Each weight matrix entry is one multiply-add per step: 2 * T * (matrix entries) + the head."""
    cfg = ModelConfig(**fields)
    model = SequenceClassifier(cfg, input_size=6, num_classes=10)
    matrices = sum(p.numel() for name, p in model.rnn.named_parameters() if name.startswith("weight"))
    assert forward_flops(cfg, 6, 9, 10) == 2 * 9 * matrices + 2 * model.head.weight.numel()


# ---------------------------------------------------------------- the baseline sees the same numbers


def test_conventional_dataset_gives_the_same_inputs(tiny_data: Path) -> None:
    from torchvision import transforms

    from seqclf.config import DataConfig

    cfg = DataConfig(name="idx", root=str(tiny_data), val_size=100)
    data = load_data(cfg, seed=0, splits=("test",))
    arrays = load_arrays(cfg)
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((data.mean,), (data.std,))])
    dataset = TorchvisionStyle(arrays.test_images, arrays.test_labels, transform)
    image, label = dataset[7]
    assert image.shape == (1, 28, 28) and label == int(data.test.y[7])
    assert torch.allclose(image[0], data.test.x[7], atol=1e-5)  # rows view: step t = row t


# ---------------------------------------------------------------- the command


def test_bench_json_fields(tiny_overrides: list[str]) -> None:
    result = runner.invoke(app, ["bench", "--config", str(ROOT / "configs/lstm.yaml"), *set_args(tiny_overrides),
                                 "--steps", "5", "--json"])
    assert result.exit_code == 0, result.output
    r = json.loads(result.stdout)
    for key in FIELDS:
        assert isinstance(r[key], (int, float)) and math.isfinite(r[key]) and r[key] > 0, key
    assert "speedup" not in r and "baseline_train_examples_per_s" not in r
    # tiny_overrides: LSTM 1x16 on 28 rows of 28 pixels, 10 classes
    assert r["flops_per_example"] == 3 * (28 * 2 * 4 * 16 * (28 + 16) + 2 * 16 * 10)
    assert r["achieved_gflops"] == pytest.approx(r["train_examples_per_s"] * r["flops_per_example"] / 1e9)
    assert r["efficiency"] == pytest.approx(r["achieved_gflops"] / r["peak_gflops"])
    assert r["peak_gflops"] == max(r["matmul_gflops"].values()) and "torch.mm" in r["matmul_gflops"]
    assert r["loop_efficiency"] == pytest.approx(r["train_examples_per_s"] / r["bare_examples_per_s"])
    assert r["steps"] == 5 and r["batch_size"] == 32 and r["device"] == "cpu" and r["threads"] == 1


def test_bench_baseline_fields_and_human_output(tiny_overrides: list[str]) -> None:
    args = ["bench", "--config", str(ROOT / "configs/gru.yaml"), *set_args(tiny_overrides), "--steps", "3"]
    result = runner.invoke(app, [*args, "--baseline", "--json"])
    assert result.exit_code == 0, result.output
    r = json.loads(result.stdout)
    for key in (*FIELDS, "baseline_train_examples_per_s", "speedup"):
        assert isinstance(r[key], (int, float)) and math.isfinite(r[key]) and r[key] > 0, key
    assert r["speedup"] == pytest.approx(r["train_examples_per_s"] / r["baseline_train_examples_per_s"])
    assert r["model"] == "gru 1x16"

    human = runner.invoke(app, args)
    assert human.exit_code == 0, human.output
    assert "loop efficiency" in human.stdout and "GFLOP/s" in human.stdout


def test_bench_bad_input_exits_2(tiny_overrides: list[str]) -> None:
    config = str(ROOT / "configs/lstm.yaml")
    result = runner.invoke(app, ["bench", "--config", config, *set_args(tiny_overrides), "--set", "model.hiden_size=8"])
    assert result.exit_code == 2 and "model.hidden_size" in result.stderr  # "did you mean"
    assert "Traceback" not in result.output
    assert runner.invoke(app, ["bench", "--config", config, "--steps", "0"]).exit_code == 2
    missing = runner.invoke(app, ["bench", "--config", config, "--set", "data.name=idx",
                                  "--set", "data.root=/nonexistent/seqclf"])
    assert missing.exit_code == 2 and "/nonexistent/seqclf" in missing.stderr


@posix_only
def test_bench_script_writes_a_markdown_table(tiny_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench.md"
    # `seqclf` runs in this process (helpers.run_script), with small_matmul's small matmul
    env = {**os.environ, "FASHION_MNIST_ROOT": str(tiny_data), "BENCH_STEPS": "2", "SEQCLF": "seqclf",
           "PYTHON": sys.executable}
    shrink = ["--set", "data.val_size=100", "--set", "model.hidden_size=4", "--set", "train.batch_size=16",
              "--set", "train.device=cpu", "--set", "train.num_threads=1"]  # later --set wins: every row tiny
    done = run_script(["bash", str(ROOT / "scripts/bench.sh"), "-o", str(out), *shrink], env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = out.read_text().splitlines()
    assert lines[0].startswith("| model | batch | train ex/s |") and "speedup" in lines[0]
    rows = [line for line in lines[2:] if line.startswith("| ")]
    assert [row.split(" | ")[0] for row in rows] == ["| LSTM 10 x 2 (seed-sized)", "| LSTM 128 x 1",
                                                     "| GRU 128 x 2 bidirectional", "| LSTM 256 x 1"]
    assert all(row.count("|") == lines[0].count("|") for row in rows)
    assert done.stdout.strip() == out.read_text().strip()  # the same table on stdout


def test_ratios_read_as_faster_or_slower_and_load_is_warned_about() -> None:
    from seqclf.use.bench import contention, ratio_text

    assert ratio_text(2.0) == "2.0x faster" and ratio_text(0.6) == "1.7x slower" and ratio_text(1.0) == "1.0x faster"
    quiet = {"load_average_start": 0.5, "load_average": 1.5, "cores": 2}
    assert contention(quiet) is None
    busy = contention({**quiet, "load_average_start": 3.2})
    assert busy is not None and "3.2" in busy and "2 cores" in busy
    assert contention({**quiet, "load_average": 2.5}) is not None  # measured at the end too
