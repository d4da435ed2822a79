"""scripts/sweep.sh end to end: a small grid through the CLI, in parallel, then `seqclf runs` on it.

The script runs in bash as users run it; its `seqclf` commands run in this process (helpers.run_script),
one at a time, while the script's two parallel jobs wait their turn.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from pathlib import Path

import pytest
from helpers import ROOT, cli_json, posix_only, run_script
from typer.testing import CliRunner

from seqclf.cli.app import app

SWEEP = ROOT / "scripts" / "sweep.sh"

pytestmark = [pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash"), posix_only]


def test_a_small_sweep_from_any_folder_then_runs_json_and_csv(tiny_data: Path, tmp_path: Path) -> None:
    """From a folder outside the repository, with the shipped config found by name (no CONFIG)."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = elsewhere / "out"
    env = {key: value for key, value in os.environ.items() if key not in ("CONFIG", "OUT")}
    env.update({"SEQCLF": "seqclf", "CELLS": "rnn gru", "LAYERS": "1", "DIRECTIONS": "uni",
                "SEEDS": "0 1", "EXTRA": "--set data.name=idx --set data.val_size=100 --set train.device=cpu"})
    done = run_script(["bash", str(SWEEP), "-j", "2", "-e", "1", "-o", "out", "--",
                       "--set", f"data.root={tiny_data}", "--set", "model.hidden_size=8",
                       "--set", "train.batch_size=64"], cwd=elsewhere, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 runs in" in done.stdout and "0 failed" in done.stdout
    assert "finished gru layers=1 uni seed=0: best val accuracy" in done.stdout
    assert len(list(out.glob("gru-*/summary.json"))) == 2
    table = done.stdout.split("runs in", 1)[1]  # the grouped comparison ends the output
    assert "± " in table and table.count("\n") >= 3 and "\x1b" not in done.stdout

    rows = cli_json("runs", str(out))
    assert len(rows) == 4
    fields = {"name", "dataset", "sequence", "cell", "num_layers", "hidden_size", "bidirectional", "lr", "seed",
              "parameters", "epochs", "val_accuracy", "test_accuracy", "seconds", "status"}
    assert all(set(row) == fields for row in rows)
    assert sorted((row["cell"], row["name"].split("-")[2]) for row in rows) == [
        ("gru", "s0"), ("gru", "s1"), ("rnn", "s0"), ("rnn", "s1")]
    for row in rows:
        summary = json.loads((out / row["name"] / "summary.json").read_text())
        assert row["status"] == "finished" and row["epochs"] == 1
        assert (row["num_layers"], row["hidden_size"], row["bidirectional"]) == (1, 8, False)
        assert row["test_accuracy"] == summary["test_accuracy"] and 0.0 <= row["test_accuracy"] <= 1.0
        assert row["parameters"] == {"rnn": 394, "gru": 1002}[row["cell"]]  # (G*8*(28+8) + 2*G*8) + 9*10
        assert row["seconds"] == summary["seconds"] > 0
        assert (out / "logs" / f"{row['cell']}-1-uni-{row['name'].split('-')[2]}.log").is_file()

    listed = CliRunner().invoke(app, ["runs", str(out), "--csv"])
    assert listed.exit_code == 0, listed.output
    parsed = list(csv.DictReader(io.StringIO(listed.stdout)))
    assert len(parsed) == 4 and set(parsed[0]) == fields
    assert {row["name"]: float(row["test_accuracy"]) for row in parsed} == {r["name"]: r["test_accuracy"] for r in rows}

    grouped = cli_json("runs", str(out), "--group-by", "model.cell,model.num_layers,model.bidirectional")
    assert sorted((g["model.cell"], g["count"]) for g in grouped) == [("gru", 2), ("rnn", 2)]
    for group in grouped:
        members = [r["test_accuracy"] for r in rows if r["cell"] == group["model.cell"]]
        assert group["test_accuracy"] == pytest.approx(sum(members) / 2)


def test_bad_usage_exits_2_before_training(tmp_path: Path) -> None:
    env = {**os.environ, "SEQCLF": "seqclf", "DIRECTIONS": "sideways"}
    bad = run_script(["bash", str(SWEEP), "-o", str(tmp_path / "out")], cwd=ROOT, env=env, timeout=60)
    assert bad.returncode == 2 and "not uni or bi" in bad.stderr
    env["DIRECTIONS"] = "uni"
    bad = run_script(["bash", str(SWEEP), "-o", str(tmp_path / "out"), "--", "--set", "model.cel=gru"],
                     cwd=ROOT, env=env, timeout=60)
    assert bad.returncode == 2 and "model.cell" in bad.stderr  # did you mean
    assert not (tmp_path / "out").exists()
