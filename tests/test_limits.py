"""Sizes that cannot work are refused before anything is allocated, with the estimate; names and
paths too long for a file system are refused up front (issue 15, item 9)."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import set_args, time_limit
from typer.testing import CliRunner

from seqclf.cli.app import app
from seqclf.config import ModelConfig, limits, load_config
from seqclf.errors import SeqclfError
from seqclf.model.classifier import SequenceClassifier, parameter_count

ROOT = Path(__file__).resolve().parents[1]
LSTM = str(ROOT / "configs" / "lstm.yaml")
LONG = "n" * 256  # one byte more than a file name may have
runner = CliRunner()


def refused(*args: str) -> str:
    with time_limit(60):  # before the limits, num_layers=10**8 built layers for hours
        result = runner.invoke(app, list(args))
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result.stderr


@pytest.mark.parametrize("overrides, fragments", [
    (["model.hidden_size=1000000000"], ["model.hidden_size: a lstm of 1 layer(s) with hidden_size 1,000,000,000 has "
                                        "at least 1.00e+18 parameters (4 EB as float32", "at most 1,000,000,000"]),
    (["model.num_layers=100000000"], ["model.num_layers: 100,000,000 is more than the 1000 layers allowed"]),
    (["model.hidden_size=auto", "model.param_budget=1000000000000000"],
     ["model.param_budget: 1.00e+15 parameters would take 4 PB as float32; at most 1,000,000,000"]),
    (["model.hidden_size=20000", "model.num_layers=2", "model.bidirectional=true"],
     ["at least 1,600,000,000 parameters (6.4 GB as float32"]),
])
def test_models_too_large_to_build_are_refused_by_validation(tmp_path: Path, overrides: list[str],
                                                             fragments: list[str]) -> None:
    out = tmp_path / "runs"
    message = refused("train", "--config", LSTM, *set_args(overrides + [f"output.dir={out}"]))
    assert all(fragment in message for fragment in fragments), message
    assert not out.exists()  # no run directory is left behind


def test_config_validate_reports_the_size_limits(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    path.write_text("model:\n  hidden_size: 1000000000\n  num_layers: 100000000\n")
    message = refused("config", "validate", str(path))
    assert "model.num_layers: 100,000,000 is more than the 1000 layers allowed" in message


def test_shapes_refuses_a_model_or_a_batch_that_cannot_fit() -> None:
    assert "at least 1.00e+18 parameters" in refused("shapes", "-c", LSTM, "--set", "model.hidden_size=1000000000")
    message = refused("shapes", "-c", LSTM, "--batch", "100000000000")
    assert "a forward pass of --batch 100000000000 would need about 3." in message and "lower --batch" in message


def test_the_exact_count_is_checked_once_the_input_size_is_known() -> None:
    """Validation judges a lower bound; the exact count (here 1.6e9 for 4e8 bound) is checked before building."""
    cfg = load_config(None, ["model.hidden_size=20000"])
    assert not limits.model_problems(cfg.model) and parameter_count(cfg.model, 28) > limits.MAX_PARAMETERS
    message = refused("shapes", "-c", LSTM, "--set", "model.hidden_size=20000")
    assert f"a lstm with hidden_size 20000 and 1 layer(s) has {parameter_count(cfg.model, 28):,} parameters" in message
    assert "at most 1,000,000,000 are allowed: lower model.hidden_size or model.num_layers" in message


def test_a_run_name_too_long_is_refused_before_data_loads(tmp_path: Path) -> None:
    message = refused("train", "--config", LSTM, "--set", f"output.name={LONG}",
                      "--set", f"data.root={tmp_path / 'no-data'}", "--set", f"output.dir={tmp_path / 'runs'}")
    assert "output.name: the name 'nnnn" in message and "is 256 bytes long; file systems allow at most 255" in message
    assert "not found" not in message and not (tmp_path / "runs").exists()
    assert load_config(None, ["output.name=" + "n" * 255]).output.name == "n" * 255


@pytest.mark.parametrize("args, option", [
    (["train", "--config", LSTM, "--set", f"data.root=/tmp/{LONG}/x"], "data.root"),
    (["train", "--config", LSTM, "--set", f"output.dir=/tmp/{LONG}"], "output.dir"),
    (["eval", f"/tmp/{LONG}/best.pt"], "checkpoint"),
    (["train", "--resume", f"runs/{LONG}"], "--resume"),
    (["runs", f"/tmp/{LONG}"], "DIR"),
    (["config", "diff", f"runs/{LONG}", LSTM], "RUN_A"),
    (["plot", "--confusion", f"/tmp/{LONG}/c.pt"], "checkpoint"),
])
def test_a_path_with_a_name_over_255_bytes_is_refused_naming_the_option(args: list[str], option: str) -> None:
    message = refused(*args)
    assert message.startswith(f"error: {option}: the name 'nnn") or f"- {option}: the name 'nnn" in message
    assert "256 bytes long" in message and "Traceback" not in message


def test_a_path_longer_than_any_file_system_allows() -> None:
    assert "DIR: the path is 4,099 bytes long; file systems allow at most 4096" in refused("runs", "a/" * 2050)


def test_memory_beyond_what_is_available_is_refused_with_the_estimate() -> None:
    free = limits.available_memory()
    assert free is not None and free > 0
    with pytest.raises(SeqclfError, match=r"a thing would need about .*B, more than the .*B of memory available; "
                                          r"lower it"):
        limits.check_memory("a thing", free * 2, "lower it")
    limits.check_memory("a thing", 1, "lower it")


def test_a_model_larger_than_the_free_memory_is_refused_before_allocating(monkeypatch) -> None:
    monkeypatch.setattr("seqclf.config.limits.available_memory", lambda: 1_000_000)  # a machine with 1 MB free
    message = refused("shapes", "-c", LSTM, "--set", "model.hidden_size=512")
    assert "a lstm with hidden_size 512 and 1 layer(s) would need about 4.46 MB, more than the 1 MB" in message
    assert "lower model.hidden_size or model.num_layers" in message
    with pytest.raises(SeqclfError, match="needs a machine with more free memory"):  # eval and --resume build this way
        SequenceClassifier(ModelConfig(hidden_size=512), input_size=28)
