"""Property tests: random and mutated YAML and --set values never produce a traceback.

The config loader either returns a Config or raises ConfigError; through the CLI every input
ends in exit 0 or 2 with a message. The CLI runs point at a data folder that does not exist
(and never download), so a valid config stops quickly with exit 2 before any training.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from seqclf import shipped
from seqclf.cli import app
from seqclf.config import Config, ConfigError, all_keys, apply_overrides, load_config, parse_overrides

SHIPPED = [shipped.path_of(name).read_text() for name in shipped.names()]
KEYS = all_keys()
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
runner = CliRunner()

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(-2**70, 2**70), st.sampled_from([-1, 0, 2**31, 2**64, 10**400]), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.sampled_from(["auto", "lstm", "gru", "1e-3", "nan", "-inf", "0x10", "1_000", "~", "yes",
                                           "2020-01-01", "mnist", "cpu", "cuda:9", "", "a/b", "\x00"]),
)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.one_of(st.text(max_size=8), st.integers()),
                                                                       inner, max_size=3)),
                      max_leaves=6)
names = st.one_of(st.sampled_from(KEYS), st.sampled_from(KEYS).map(lambda k: k[:-1]), st.text(max_size=15))
odd_keys = st.one_of(st.integers(), st.booleans(), st.none(), st.floats())  # YAML keys need not be strings


@st.composite
def nested_configs(draw: st.DrawFn) -> dict:
    """Dicts shaped like configs: mostly valid dotted keys with random values, some unknown keys."""
    pairs = draw(st.lists(st.tuples(st.one_of(names, odd_keys), values), max_size=6))
    raw = apply_overrides({}, [(key, value) for key, value in pairs if isinstance(key, str)])
    raw.update((key, value) for key, value in pairs if not isinstance(key, str))
    return raw


@st.composite
def mutated_yaml(draw: st.DrawFn) -> str:
    """A shipped config with characters deleted, inserted or replaced, or lines shuffled."""
    text = draw(st.sampled_from(SHIPPED))
    for _ in range(draw(st.integers(1, 5))):
        where = draw(st.integers(0, len(text)))
        kind = draw(st.sampled_from(["delete", "insert", "replace", "swap"]))
        piece = draw(st.sampled_from([":", " ", "\n", "-", "[", "{", "'", '"', "\t", "#", "&a", "*a", "!!python/object:os.system",
                                      "%", "@", "\\", "|", ">", "? ", "0", "1e", "x"]))
        if kind == "delete":
            text = text[:where] + text[where + draw(st.integers(1, 8)):]
        elif kind == "insert":
            text = text[:where] + piece + text[where:]
        elif kind == "replace":
            text = text[:where] + piece + text[where + 1:]
        else:
            lines = text.splitlines(keepends=True)
            i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
            text = "".join(lines)
    return text


yaml_texts = st.one_of(st.text(max_size=200), mutated_yaml(),
                       nested_configs().map(lambda raw: yaml.safe_dump(raw, allow_unicode=True)))
set_items = st.one_of(
    st.tuples(names, st.text(max_size=20)).map(lambda kv: f"{kv[0]}={kv[1]}"),
    st.tuples(st.sampled_from(KEYS), scalars).map(lambda kv: f"{kv[0]}={yaml.safe_dump(kv[1]).strip()}"),
    st.text(max_size=30),
)


@pytest.fixture(autouse=True)
def keep_torch_threads():
    """The CLI sets torch's thread count from the config; leave the rest of the suite as it was."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def loads_or_config_error(path: Path | None, overrides: list[str]) -> None:
    try:
        cfg = load_config(path, overrides)
    except ConfigError as exc:
        assert str(exc).startswith("Invalid config") and exc.problems
    else:
        assert isinstance(cfg, Config)


@FAST
@given(text=yaml_texts, overrides=st.lists(set_items, max_size=3))
def test_config_loader_only_returns_a_config_or_raises_config_error(text: str, overrides: list[str]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "config.yaml"
        path.write_text(text, encoding="utf-8")
        loads_or_config_error(path, overrides)


@FAST
@given(overrides=st.lists(set_items, min_size=1, max_size=4))
def test_set_items_only_parse_or_raise_config_error(overrides: list[str]) -> None:
    try:
        parsed = parse_overrides(overrides)
    except ConfigError:
        return
    assert all(key in KEYS for key, _ in parsed)
    loads_or_config_error(None, overrides)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=yaml_texts, overrides=st.lists(set_items, max_size=3))
def test_cli_train_never_shows_a_traceback(text: str, overrides: list[str]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "config.yaml"
        path.write_text(text, encoding="utf-8")
        # later --set wins: whatever the fuzz chose, look for data where there is none, never download
        args = ["train", "--config", str(path)] + [f"--set={item}" for item in overrides] + [
            f"--set=data.root={folder}/no-data", "--set=data.download=false", f"--set=output.dir={folder}/runs"]
        result = runner.invoke(app, args)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 2, result.output  # a bad config, or (valid) the missing data
    assert result.output.startswith("error: ") and "Traceback" not in result.output


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from conftest import make_dataset
    from seqclf.train import train

    tmp = tmp_path_factory.mktemp("fuzz")
    data = make_dataset(tmp / "data", n_train=120, n_test=20)
    cfg = load_config(None, ["data.name=idx", f"data.root={data}", "data.val_size=20", "model.hidden_size=4",
                             "train.epochs=1", "train.batch_size=100", "train.device=cpu", "train.num_threads=1",
                             f"output.dir={tmp}"])
    return Path(train(cfg)["checkpoint"])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(overrides=st.lists(set_items, max_size=3), split=st.sampled_from(["test", "val", "train", ""]))
def test_cli_eval_never_shows_a_traceback(tiny_checkpoint: Path, overrides: list[str], split: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        args = ["eval", str(tiny_checkpoint), "--split", split] + [f"--set={item}" for item in overrides] + [
            f"--set=data.root={folder}/no-data", "--set=data.download=false"]
        result = runner.invoke(app, args)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 2 and result.output.startswith("error: ") and "Traceback" not in result.output
