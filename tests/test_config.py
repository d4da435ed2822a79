"""Config: defaults, YAML + --set merging, validation messages that name key, file and fix."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from helpers import ROOT
from typer.testing import CliRunner

from seqclf import config as config_module
from seqclf.cli.app import app
from seqclf.config import (
    Config,
    ConfigError,
    all_keys,
    load_config,
    reference_markdown,
    shipped,
    to_dict,
    to_yaml,
)

CONFIGS = [shipped.path_of(name) for name in shipped.names()]
runner = CliRunner()


def write(tmp_path: Path, text: str, name: str = "run.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def problems(path: Path | None = None, overrides: list[str] = ()) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, list(overrides))
    return str(info.value)


# ---------------------------------------------------------------- loading and merging


def test_defaults_are_the_dataclass_defaults() -> None:
    cfg = load_config()
    assert cfg == Config()
    assert (cfg.seed, cfg.model.cell, cfg.model.hidden_size, cfg.train.epochs, cfg.train.lr) == \
        (0, "lstm", 128, 8, 1e-3)
    assert cfg.data.max_train is None and cfg.output.name is None


def test_yaml_then_set_overrides_and_later_set_wins(tmp_path: Path) -> None:
    path = write(tmp_path, "seed: 3\nmodel:\n  cell: gru\n  hidden_size: 64\ntrain:\n  epochs: 2\n")
    cfg = load_config(path, ["model.hidden_size=32", "train.lr=0.01", "model.hidden_size=48", "seed=7"])
    assert cfg.model.cell == "gru"  # from the file
    assert cfg.model.hidden_size == 48  # the last --set wins over the file and the earlier --set
    assert cfg.train.lr == 0.01 and cfg.seed == 7 and cfg.train.epochs == 2
    assert cfg.model.num_layers == 1  # untouched keys keep their defaults
    assert load_config(path, ["model.cell=rnn"]).model.cell == "rnn"


@pytest.mark.parametrize("text", ["1e-3", "1.0e-3", "0.001", "'1e-3'"])
def test_numeric_strings_are_floats(tmp_path: Path, text: str) -> None:
    cfg = load_config(write(tmp_path, f"train:\n  lr: {text}\n  grad_clip: 1\n"))
    assert cfg.train.lr == 1e-3 and isinstance(cfg.train.lr, float)
    assert cfg.train.grad_clip == 1.0 and isinstance(cfg.train.grad_clip, float)
    assert load_config(None, ["train.lr=2e-3"]).train.lr == 2e-3


def test_set_parses_values_as_yaml() -> None:
    cfg = load_config(None, ["model.bidirectional=true", "data.max_train=null", "output.name=abc",
                             "model.dropout=0", "model.num_layers=2"])
    assert cfg.model.bidirectional is True and cfg.data.max_train is None and cfg.output.name == "abc"
    assert cfg.model.dropout == 0.0 and isinstance(cfg.model.dropout, float)


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_config_loads_and_round_trips(path: Path) -> None:
    cfg = load_config(path)
    assert path.read_text().startswith("# seqclf train --config configs/")  # says how to run it
    again = config_module.config_from_dict(to_dict(cfg))
    assert again == cfg
    assert config_module.config_from_dict(yaml.safe_load(to_yaml(cfg))) == cfg


def test_shipped_configs_exist() -> None:
    assert {p.name for p in CONFIGS} >= {"lstm.yaml", "gru.yaml", "rnn.yaml", "bilstm.yaml"}


def test_readme_config_reference_is_generated_from_the_schema() -> None:
    readme = (ROOT / "README.md").read_text()
    found = re.search(r"<!-- config-reference:start -->\n(.*?)\n<!-- config-reference:end -->", readme, re.S)
    assert found, "README lacks the config-reference markers"
    assert found.group(1) == reference_markdown()
    for key in all_keys():
        assert f"| `{key}` |" in found.group(1)


def test_every_field_has_help_text() -> None:
    for key, kind, _default, help_text in config_module.describe_keys():
        assert help_text and kind, key


# ---------------------------------------------------------------- error messages


def test_unknown_key_names_key_file_and_closest_key(tmp_path: Path) -> None:
    path = write(tmp_path, "model:\n  hiden_size: 64\n")
    message = problems(path)
    assert "model.hiden_size" in message and str(path) in message
    assert "did you mean `hidden_size`?" in message
    assert "did you mean `seed`?" in problems(write(tmp_path, "sede: 1\n"))
    message = problems(None, ["model.hiden_size=3"])
    assert "--set" in message and "did you mean `model.hidden_size`?" in message


def test_wrong_type_names_key_expected_type_and_value(tmp_path: Path) -> None:
    message = problems(write(tmp_path, "train:\n  epochs: three\n"))
    assert "train.epochs" in message and "expected int" in message and "'three'" in message
    message = problems(None, ["model.bidirectional=maybe"])
    assert "model.bidirectional" in message and "expected bool" in message and "'maybe'" in message
    message = problems(None, ["train.lr=fast"])
    assert "train.lr" in message and "expected float" in message and "'fast'" in message
    assert "expected int" in problems(None, ["train.epochs=2.5"])
    assert "expected int" in problems(None, ["seed=true"])  # a bool is not an int


def test_bad_choice_lists_valid_choices() -> None:
    message = problems(None, ["model.cell=gruu"])
    assert "model.cell" in message and "'gruu'" in message and "rnn, lstm, gru" in message
    assert "sgd, adam, adamw" in problems(None, ["train.optimizer=lbfgs"])


def test_malformed_yaml_gives_line_and_column(tmp_path: Path) -> None:
    message = problems(write(tmp_path, "model:\n  cell: lstm\n   hidden_size: 3\n"))
    assert "line 3, column" in message and "malformed YAML" in message
    assert "line 3, column 4" in problems(write(tmp_path, "model:\n  cell: [lstm\n  x: 1\n", "b.yaml"))
    assert "line 2, column 1" in problems(write(tmp_path, "model:\n\tcell: lstm\n", "c.yaml"))


def test_non_mapping_yaml_and_missing_file(tmp_path: Path) -> None:
    assert "mapping" in problems(write(tmp_path, "- a\n- b\n"))
    assert "no such file" in problems(tmp_path / "missing.yaml")
    assert "folder" in problems(tmp_path)


@pytest.mark.parametrize("overrides, fragment", [
    (["model.proj_size=128"], "model.proj_size (128) must be smaller than model.hidden_size (128)"),
    (["model.proj_size=8", "model.cell=gru"], "only an LSTM has a projection"),
    (["model.dropout=1"], "model.dropout: must be in [0, 1), got 1.0"),
    (["model.dropout=-0.1"], "model.dropout: must be in [0, 1)"),
    (["train.epochs=0"], "train.epochs: must be positive"),
    (["train.patience=-1"], "train.patience: must be 0 (off) or a number of epochs, got -1"),
    (["train.patience=1.5"], "train.patience: expected int"),
    (["train.lr=.nan"], "train.lr: expected a finite number"),
    (["train.lr=1e999"], "train.lr: expected a finite number"),
    (["seed=18446744073709551616"], "seed: must fit in 64 bits"),
    (["train.num_threads=2147483648"], "train.num_threads: must be 0 (auto) or a thread count up to 4096"),
    (["train.lr=1" + "0" * 400], "train.lr: expected float"),
    (["model.nonlinearity=relu"], "only cell=rnn has a choice"),
    (["train.device=gpu"], "train.device: 'gpu' is not one of"),
    (["output.name=a/b"], "output.name"),
    (['output.name="a\\nb"'], "output.name: 'a\\nb' holds a control character"),
    (['output.name="tab\\there"'], "holds a control character"),
    (['output.dir="runs\\0x"'], "output.dir: must not contain a NUL character"),
])
def test_impossible_combinations_are_named(overrides: list[str], fragment: str) -> None:
    assert fragment in problems(None, overrides)


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    message = problems(write(tmp_path, "model:\n  hiden_size: 3\n  cell: x\ntrain:\n  epochs: y\n"))
    assert message.count("\n  - ") == 3


def test_config_errors_come_before_any_data_is_loaded(tmp_path: Path) -> None:
    """Impossible combinations exit 2 naming the key, although the data folder does not even exist."""
    path = write(tmp_path, f"data:\n  name: idx\n  root: {tmp_path / 'nowhere'}\n  max_train: 50\n  val_size: 0\n"
                           f"output:\n  dir: {tmp_path / 'runs'}\n")
    result = runner.invoke(app, ["train", "--config", str(path), "--set", "model.proj_size=200"])
    assert result.exit_code == 2
    assert "model.proj_size (200)" in result.output and "data.val_size: must be at least 1" in result.output
    assert "nowhere" not in result.output  # never got as far as looking for data
    assert not (tmp_path / "runs").exists()


def test_malformed_set_items() -> None:
    assert "expected KEY=VALUE" in problems(None, ["model.cell"])
    assert "expected KEY=VALUE" in problems(None, ["=3"])
    assert "single value" in problems(None, ["model.cell=[a, b]"])



def test_validate_lists_every_problem_of_every_kind(tmp_path: Path) -> None:
    """Range problems are found even when another key has a type problem (issue 14, item 9)."""
    path = write(tmp_path, "model:\n  hidden_size: -5\n  cell: x\n  hiden: 3\ntrain:\n  epochs: y\n")
    result = runner.invoke(app, ["config", "validate", str(path)])
    assert result.exit_code == 2
    listed = [line for line in result.stderr.splitlines() if line.startswith("  - ")]
    assert len(listed) == 4, result.stderr
    assert "model.hidden_size: must be positive, got -5" in result.stderr


def test_a_range_check_never_judges_the_default_of_a_key_that_failed(tmp_path: Path) -> None:
    message = problems(write(tmp_path, "model:\n  hidden_size: big\n  proj_size: 200\n"))
    assert message.count("\n  - ") == 1 and "model.hidden_size: expected a positive integer or `auto`" in message


def test_valid_keys_are_listed_once(tmp_path: Path) -> None:
    message = problems(None, ["zzzzzz=1"]) + problems(write(tmp_path, "qqqqqq: 1\n"))
    assert len(re.findall(r"(?<![\w.])seed(?!\w)", message)) == 2  # once in each list


def test_max_train_smaller_than_val_size_trains_on_max_train_examples(tiny_overrides: list[str]) -> None:
    """`--set data.max_train=N` is a smoke test of N training examples; validation is held out first (issue 14.5)."""
    args = [f"--set={item}" for item in tiny_overrides + ["data.max_train=50", "train.epochs=1"]]
    result = runner.invoke(app, ["train", "--config", str(ROOT / "configs/lstm.yaml"), *args])
    assert result.exit_code == 0, result.output
    assert "50 train / 100 val / 200 test examples" in result.stdout


def test_a_dotted_key_at_the_top_level_says_where_it_belongs(tmp_path: Path) -> None:
    """A search space file given as a config used to answer `train.lr: unknown key; did you mean train.lr?`."""
    path = tmp_path / "flat.yaml"
    path.write_text("train.lr: 0.01\n")
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    assert "train.lr: a dotted key belongs nested in a config file (train: then lr: under it)" in str(refused.value)
    assert "did you mean" not in str(refused.value)
