"""Real data: a row-wise LSTM learns the real Fashion-MNIST (Debian's dataset-fashion-mnist)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from seqclf.cli import app
from conftest import ROOT


def test_lstm_learns_real_fashion_mnist(fashion_root: Path, tmp_path: Path) -> None:
    # A 12,000-example subset and 2 epochs in one thread: seconds on a CPU, far above chance (0.10); about 0.79.
    sets = ["data.name=fashion_mnist", f"data.root={fashion_root}", "data.download=false",
            "data.max_train=12000", "data.val_size=2000", "data.max_test=2000", "model.hidden_size=64",
            "train.epochs=2", "train.lr=0.01", "train.device=cpu", "train.num_threads=1", f"output.dir={tmp_path}"]
    args = ["train", "--config", str(ROOT / "configs/lstm.yaml"), "--json"]
    for item in sets:
        args += ["--set", item]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["test_accuracy"] > 0.70, summary
    scored = CliRunner().invoke(app, ["eval", summary["checkpoint"], "--json"])
    assert json.loads(scored.stdout)["accuracy"] == summary["test_accuracy"]
