"""The YAML every config read goes through: alias bombs, duplicate keys, deep nesting and
huge files are refused quickly with a short message naming the line (issue 15, items 7 and 8)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import process, time_limit
from typer.testing import CliRunner

from seqclf.cli.app import app
from seqclf.config import ConfigError, load_config, safe_yaml

runner = CliRunner()


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """`a: &a [x, ...]`, `b: &b [*a, *a, ...]`, ..., `data: *i`: width**levels strings from ten lines."""
    lines = ["a: &a [" + ", ".join(["xxxxxxxxxx"] * width) + "]"]
    names = "abcdefghijklmnopqrstuvwxyz"
    for previous, name in zip(names, names[1:levels]):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{previous}"] * width) + "]")
    return "\n".join(lines + [f"data: *{names[levels - 1]}"]) + "\n"


def refused(path: Path | None = None, overrides: list[str] = ()) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, list(overrides))
    return str(info.value)


LSTM = str(Path(__file__).resolve().parents[1] / "configs/lstm.yaml")


@pytest.mark.parametrize("command", [["config", "validate"], ["config", "show", "-c"], ["config", "diff", LSTM]])
def test_an_alias_bomb_is_refused_at_once_by_every_command(tmp_path: Path, command: list[str]) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(alias_bomb())
    with time_limit(30):  # on a loader without limits: minutes and gigabytes
        done = runner.invoke(app, [*command, str(bomb)])
    assert done.exit_code == 2, done.stderr
    assert "more than 2000 values (aliases expanded)" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr) < 400  # never the value itself


def test_a_few_aliases_still_work(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text("model:\n  hidden_size: &h 64\ntrain:\n  batch_size: *h\n"
                    "data: &d\n  max_test: 10\n")
    cfg = load_config(path)
    assert cfg.model.hidden_size == 64 and cfg.train.batch_size == 64 and cfg.data.max_test == 10


def test_more_than_a_few_aliases_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "many.yaml"
    path.write_text("train:\n  epochs: &e 3\nx: [" + ", ".join(["*e"] * 40) + "]\n")
    assert "more than 32 aliases" in refused(path)


def test_a_recursive_alias_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "loop.yaml"
    path.write_text("data: &a [*a]\n")
    assert "line 1: an alias refers to the collection that contains it" in refused(path)


def test_duplicate_keys_are_refused_with_both_lines(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text("model:\n  cell: gru\ntrain:\n  epochs: 2\nmodel:\n  hidden_size: 8\n")
    assert "duplicate key model (lines 1 and 5)" in refused(path)
    path.write_text("model:\n  cell: gru\n  hidden_size: 8\n  cell: rnn\n")
    assert "duplicate key cell (lines 2 and 4)" in refused(path)


def test_a_merge_key_may_be_overridden(tmp_path: Path) -> None:
    path = tmp_path / "merge.yaml"
    path.write_text("model:\n  <<: {cell: gru, hidden_size: 8}\n  hidden_size: 16\n")
    cfg = load_config(path)
    assert (cfg.model.cell, cfg.model.hidden_size) == ("gru", 16)


@pytest.mark.parametrize("text", ["data: " + "[" * 5000 + "]" * 5000,
                                  "data:" + "".join(f"\n{' ' * i}k{i}:" for i in range(60))])
def test_deep_nesting_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text(text + "\n")
    assert "nested more than 32 levels deep" in refused(path)


def test_set_values_go_through_the_same_limits() -> None:
    bomb = "[&a [x, x, x, x], &b [*a, *a, *a, *a], &c [*b, *b, *b, *b], &d [*c, *c, *c, *c], [*d, *d, *d, *d, *d, *d]]"
    message = refused(None, [f"data.name={bomb}"])
    assert "--set data.name: line 1: more than 2000 values" in message and len(message) < 300
    assert "nested more than 32 levels" in refused(None, ["data.name=" + "[" * 100 + "]" * 100])


def test_a_huge_file_or_an_endless_one_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("# padding\n" * 10_000 + "model:\n  cell: gru\n")
    assert "larger than the 65,536 bytes a config may have" in refused(path)
    result = runner.invoke(app, ["config", "validate", "/dev/zero"])  # would read forever
    assert result.exit_code == 2 and "larger than the 65,536 bytes" in result.output


def test_long_values_are_cut_in_messages(tmp_path: Path) -> None:
    path = tmp_path / "long.yaml"
    path.write_text(f"data:\n  name: {'x' * 20_000}\nmodel: [{', '.join(['1'] * 1500)}]\n")
    message = refused(path)
    assert "data.name: 'xxx" in message and "model: expected a mapping" in message and len(message) < 400


def test_describe_names_the_line_of_a_syntax_error() -> None:
    with pytest.raises(Exception) as info:
        safe_yaml.load("a: [1, 2\nb: 3\n")
    assert safe_yaml.describe(info.value).startswith("malformed YAML at line 2, column 2")


def test_a_file_of_a_thousand_unknown_keys_gives_a_bounded_message(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    path.write_text("".join(f"q{i}zz: {i}\n" for i in range(990)))
    message = refused(path)
    assert message.count("\n  - ") == 50 and message.endswith("... and 940 more problems")


@process  # a fresh interpreter: what it has imported when the command ends
@pytest.mark.parametrize("command", [["train", "--config"], ["config", "validate"], ["config", "show", "-c"]])
def test_a_bad_config_is_refused_before_torch_is_even_imported(tmp_path: Path, command: list[str]) -> None:
    """Importing torch takes seconds; a config error should take a fraction of one."""
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(alias_bomb())
    code = ("import sys\nfrom seqclf.cli.app import app\ntry:\n    app(sys.argv[1:])\n"
            "except SystemExit as exc:\n    print(exc.code, 'torch' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code, *command, str(bomb)], capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["2", "False"], done.stdout + done.stderr


@pytest.mark.parametrize("text, fragment", [
    ("seed: " + "1" * 5000, "line 1: '1111"),  # Python refuses int() of more than 4300 digits
    ("seed: !!timestamp 2020-99-99", "line 1: '2020-99-99' is not a valid timestamp (month must be in 1..12)"),
    ("model:\n  hidden_size: 1" + "0" * 4000, "model.hidden_size: a lstm of 1 layer(s) with hidden_size 10^4000"),
])
def test_values_no_type_can_hold_are_refused_naming_the_line(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "odd.yaml"
    path.write_text(text + "\n")
    message = refused(path)
    assert fragment in message and len(message) < 400


SHIPPED = sorted((Path(safe_yaml.__file__).parent.parent / "configs").glob("*.yaml"))
ODD_BUT_VALID = ["", "a: 0o17\nb: 1e3\nc: .inf\nd: ~\ne: yes\nf: 2020-01-02", "%YAML 1.1\n---\na: 1",
                 "base: &b {x: 1, y: [1, 2]}\nc:\n  <<: *b\n  x: 2", "s: 'it''s'\nt: \"\\u00e9\\t\"",
                 "lr: !!float 1\nn: !!str 12"]


@pytest.mark.parametrize("loader", sorted(set(safe_yaml.LOADERS) - {"python"}))
def test_libyaml_reads_every_value_as_pyyaml_does(loader: str) -> None:
    """Values are read by libyaml's parser where PyYAML has it (seven times sooner); they must be the very
    values PyYAML's own parser gives, limits included."""
    texts = [path.read_text() for path in SHIPPED] + ODD_BUT_VALID
    for text in texts:
        assert safe_yaml._load(safe_yaml.LOADERS[loader], text) == safe_yaml._load(safe_yaml._PythonLoader, text)
    for text in ["a: &a [x, x]\n" + "".join(f"a{i}: *a\n" for i in range(40)), "a: 1\na: 2", "b: " + "[" * 40]:
        with pytest.raises(safe_yaml.YamlRefused) as fast:
            safe_yaml._load(safe_yaml.LOADERS[loader], text)
        with pytest.raises(safe_yaml.YamlRefused) as reference:
            safe_yaml._load(safe_yaml._PythonLoader, text)
        assert str(fast.value) == str(reference.value)


@pytest.mark.parametrize("text, fragment", [
    ("model:\n\t- hidden_size: 8", "line 2, column 1: found character '\\t' that cannot start any token"),
    ("data: " + "[" * 5000 + "]" * 5000, "line 1: nested more than 32 levels deep"),  # libyaml stops at 1000 itself
    ("train: {lr: 1", "expected ',' or '}', but got '<stream end>'"),
])
def test_a_refusal_reads_as_pyyamls_parser_words_it(text: str, fragment: str) -> None:
    with pytest.raises(yaml.YAMLError) as refusal:
        safe_yaml.load(text)
    assert fragment in safe_yaml.describe(refusal.value)
