"""scripts/time_to_accuracy.sh end to end on tiny data: both shipped configs trained, the table of times.

The script runs in bash; its `seqclf` commands run in this process (helpers.run_script)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, make_dataset, posix_only, run_script

SCRIPT = ROOT / "scripts" / "time_to_accuracy.sh"

pytestmark = [pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash"), posix_only]


def test_both_configs_train_and_the_times_are_read_from_their_metrics(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data", n_train=300, n_test=100)
    env = {**os.environ, "SEQCLF": "seqclf", "PYTHON": sys.executable, "THRESHOLDS": "0.05 1.0"}
    tiny = ["data.val_size=100", "model.hidden_size=8", "model.num_layers=1", "model.bidirectional=false",
            "train.epochs=2", "train.batch_size=50", "train.device=cpu", "train.num_threads=1"]
    done = run_script(["bash", str(SCRIPT), str(data), "-o", str(tmp_path / "out"),
                       *[part for item in tiny for part in ("--set", item)]], cwd=tmp_path, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[0].split(" | ")[3:5] == ["val 0.05 after", "val 1.00 after"]
    assert [row.split(" | ")[0] for row in rows[1:]] == ["| lstm", "| fashion_fast"]
    for row in rows[1:]:
        cells = row.strip("| ").split(" | ")
        assert cells[3].endswith(" s (epoch 1)")  # any accuracy beats 0.05 after the first epoch
        assert cells[4] == "not reached"  # 100% validation accuracy on noisy tiny data: never
        assert 0.0 <= float(cells[-1]) <= 1.0 and cells[2] == "2"
    for name in ("lstm", "fashion_fast"):
        assert len(list((tmp_path / "out" / name).glob("*/summary.json"))) == 1


def test_bad_usage_exits_2_before_training(tmp_path: Path) -> None:
    missing = subprocess.run(["bash", str(SCRIPT), str(tmp_path / "nowhere")], capture_output=True, text=True,
                             timeout=60)
    assert missing.returncode == 2 and "no such folder" in missing.stderr
    unknown = subprocess.run(["bash", str(SCRIPT), str(tmp_path), "--epochs", "3"], capture_output=True, text=True,
                             timeout=60)
    assert unknown.returncode == 2 and "unknown option --epochs" in unknown.stderr
