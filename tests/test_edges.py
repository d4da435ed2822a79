"""Edge cases a user hits: data that does not fit a checkpoint, empty classes, damaged run files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers import ROOT, make_dataset, set_args
from typer.testing import CliRunner

from seqclf.cli.app import app
from seqclf.config import ConfigError, load_config

runner = CliRunner()



@pytest.fixture(scope="module")
def finished(module_overrides: list[str]) -> dict:
    """One finished one-epoch tiny run, trained once for the module: its summary."""
    result = runner.invoke(app, ["train", "--config", str(ROOT / "configs/lstm.yaml"), *set_args(module_overrides),
                                 "--set", "train.epochs=1", "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_eval_on_data_of_another_shape_is_a_clean_error(finished: dict, tmp_path: Path) -> None:
    small = make_dataset(tmp_path / "d14", size=14)
    result = runner.invoke(app, ["eval", finished["checkpoint"], "--set", f"data.root={small}"])
    assert result.exit_code == 2, result.output
    assert "does not fit" in result.stderr and str(small) in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_fp16_off_cuda_is_refused_with_a_message(finished: dict) -> None:
    result = runner.invoke(app, ["eval", finished["checkpoint"], "--set", "train.precision=fp16"])
    assert result.exit_code == 2, result.output
    assert "fp16 runs on CUDA only" in result.stderr


def test_a_class_without_examples_has_no_accuracy(finished: dict) -> None:
    result = runner.invoke(app, ["eval", finished["checkpoint"], "--set", "data.max_test=3", "--json"])
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout)
    present = [k for k, row in enumerate(scores["confusion_matrix"]) if sum(row)]
    assert len(present) <= 3
    for k, accuracy in enumerate(scores["per_class_accuracy"]):
        assert (accuracy is None) == (k not in present)


def test_damaged_run_files_give_messages_not_tracebacks(finished: dict, tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "damaged"
    shutil.copytree(finished["run_dir"], run_dir)  # the module's run stays intact for the other tests
    (run_dir / "metrics.jsonl").write_text('{"epoch": 1}\n{trunc')
    (run_dir / "summary.json").write_text("{bad")
    listed = runner.invoke(app, ["runs", str(run_dir.parent), "--json"])
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.stdout)[0]["status"] == "damaged"
    plotted = runner.invoke(app, ["plot", str(run_dir), "-o", str(run_dir / "p.png")])
    assert plotted.exit_code == 2, plotted.output
    assert "metrics.jsonl: line 2" in plotted.stderr


def test_dropout_without_a_second_layer_is_a_warning(tiny_overrides: list[str]) -> None:
    result = runner.invoke(app, ["train", "--config", str(ROOT / "configs/lstm.yaml"), *set_args(tiny_overrides),
                                 "--set", "train.epochs=1", "--set", "model.dropout=0.3"])
    assert result.exit_code == 0, result.output
    assert "model.dropout=0.3 has no effect with model.num_layers=1" in result.stderr


@pytest.mark.parametrize("overrides,fragment", [
    (["data.val_size=0"], "data.val_size: must be at least 1"),
])
def test_settings_that_would_silently_mislead_are_refused(overrides: list[str], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(")):
        load_config(None, overrides)
