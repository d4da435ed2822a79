"""Property tests: random and mutated YAML and --set values never produce a traceback.

The config loader either returns a Config or raises ConfigError; through the CLI every input
ends in exit 0 or 2 with a message. The CLI runs point at a data folder that does not exist
(and never download), so a valid config stops quickly with exit 2 before any training.
"""

from __future__ import annotations

import dataclasses
import gzip
import math
import struct
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from helpers import FILES, changed_checkpoint, time_limit, write_idx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from seqclf.cli.app import app
from seqclf.config import (
    Config,
    ConfigError,
    all_keys,
    apply_overrides,
    load_config,
    parse_overrides,
    shipped,
)
from seqclf.data.idx import DataError, read_idx
from seqclf.store.checkpoint import DataMeta

SHIPPED = [shipped.path_of(name).read_text() for name in shipped.names()]
KEYS = all_keys()
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
runner = CliRunner()

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(-2**70, 2**70),
    st.sampled_from([-1, 0, 2**31, 2**64, 10**400]), st.floats(allow_nan=True, allow_infinity=True),
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
        piece = draw(st.sampled_from([":", " ", "\n", "-", "[", "{", "'", '"', "\t", "#", "&a", "*a",
                                      "!!python/object:os.system", "%", "@", "\\", "|", ">", "? ", "0", "1e", "x"]))
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
def tiny_checkpoint(trained: tuple[Path, Path]) -> Path:
    return trained[0]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(overrides=st.lists(set_items, max_size=3), split=st.sampled_from(["test", "val", "train", ""]))
def test_cli_eval_never_shows_a_traceback(tiny_checkpoint: Path, overrides: list[str], split: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        args = ["eval", str(tiny_checkpoint), "--split", split] + [f"--set={item}" for item in overrides] + [
            f"--set=data.root={folder}/no-data", "--set=data.download=false"]
        result = runner.invoke(app, args)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 2 and result.output.startswith("error: ") and "Traceback" not in result.output


# ---------------------------------------------------------------- YAML structure, IDX headers, checkpoint fields
# Each call runs under a time limit: a hang fails the test instead of stalling the suite.

SMALL = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
yaml_scalars = st.sampled_from(["1", "x", "null", "gru", "-5", "1e-3", "'a: b'", "[1, 2]", "{a: 1}", "&s 3"])


@st.composite
def structured_yaml(draw: st.DrawFn) -> str:
    """Config-shaped YAML built from the structures that broke loaders: anchors whose lists repeat
    earlier aliases (bombs among them), aliases into their own collection, keys given twice (at the
    top and inside a section) and nesting hundreds of levels deep, flow and block."""
    defined: list[str] = []
    lines = []
    for i in range(draw(st.integers(1, 8))):
        key = draw(st.sampled_from(["seed", "data", "model", "train", "output", "x", "y", "z"]))
        form = draw(st.sampled_from(["scalar", "anchor", "anchor", "alias", "section", "section", "deep_flow",
                                     "deep_block", "bomb"]))
        if form == "bomb":  # each level repeats the one before `width` times: width ** levels values
            width, levels = draw(st.integers(2, 12)), draw(st.integers(2, 8))
            lines.append(f"b{i}0: &b{i}0 [" + ", ".join(["xxxxxxxx"] * width) + "]")
            lines += [f"b{i}{n}: &b{i}{n} [" + ", ".join([f"*b{i}{n - 1}"] * width) + "]" for n in range(1, levels)]
            lines.append(f"{key}: *b{i}{levels - 1}")
        elif form == "anchor":
            name = f"a{i}"
            aliases = [f"*{d}" for d in defined] * 3 + ["1", "x"]
            items = draw(st.lists(st.sampled_from(aliases), max_size=12))
            if draw(st.integers(0, 9)) == 0:
                items.append(f"*{name}")  # refers to the list that holds it
            lines.append(f"{key}: &{name} [{', '.join(items)}]")
            defined.append(name)
        elif form == "alias" and defined:
            lines.append(f"{key}: *{draw(st.sampled_from(defined))}")
        elif form == "section":
            names = draw(st.lists(st.sampled_from(["cell", "hidden_size", "epochs", "lr", "name", "val_size"]),
                                  max_size=5))
            lines.append(f"{key}:" + "".join(f"\n  {name}: {draw(yaml_scalars)}" for name in names))
        elif form == "deep_flow":
            depth = draw(st.one_of(st.integers(1, 30), st.integers(1, 400)))
            lines.append(f"{key}: " + "[" * depth + "]" * depth)
        elif form == "deep_block":
            depth = draw(st.one_of(st.integers(1, 30), st.integers(1, 60)))
            lines.append(f"{key}:" + "".join(f"\n{'  ' * (level + 1)}k{level}:" for level in range(depth)))
        else:
            lines.append(f"{key}: {draw(yaml_scalars)}")
    return "\n".join(lines) + "\n"


def assert_clean(result: Any, codes: tuple[int, ...] = (0, 2)) -> None:
    """An exit status from `codes`, a message on failure, never a traceback or an over-long line."""
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code in codes, result.output
    assert result.exit_code == 0 or "error: " in result.output
    assert "Traceback" not in result.output and max(map(len, result.output.splitlines() or [""])) < 2000


@SMALL
@given(text=structured_yaml())
def test_yaml_structure_never_hangs_or_shows_a_traceback(text: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "config.yaml"
        path.write_text(text)
        with time_limit(10):
            loads_or_config_error(path, [])
            assert_clean(runner.invoke(app, ["config", "validate", str(path)]))


dims_values = st.one_of(st.integers(-3, 40), st.integers(-2**31, 2**31 - 1))


@SMALL
@given(magic=st.one_of(st.sampled_from([b"\0\0\x08\x03", b"\0\0\x08\x01"]), st.binary(min_size=0, max_size=4)),
       dims=st.lists(dims_values, max_size=4), extra=st.integers(-3, 3), gz=st.booleans())
def test_any_idx_header_is_a_tensor_or_a_data_error(magic: bytes, dims: list[int], extra: int, gz: bool) -> None:
    product = math.prod(dims) if all(0 <= d <= 40 for d in dims) else 8
    content = magic + b"".join(struct.pack(">i", d) for d in dims) + bytes(max(product + extra, 0))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / ("t10k-images-idx3-ubyte" + (".gz" if gz else ""))
        path.write_bytes(gzip.compress(content) if gz else content)
        with time_limit(10):
            try:
                tensor = read_idx(path)
            except DataError as exc:
                assert str(path) in str(exc)
            else:
                assert tensor.dtype == torch.uint8 and tensor.dim() in (1, 3) and min(tensor.shape) >= 0


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dims=st.lists(dims_values, min_size=3, max_size=3), labels=st.integers(-1, 300))
def test_eval_on_any_test_images_header_ends_in_a_message(trained: tuple[Path, Path], dims: list[int],
                                                           labels: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        count = dims[0] if 0 <= dims[0] <= 40 else 4
        images = bytes([0, 0, 8, 3]) + struct.pack(">3i", *dims)
        images += bytes(math.prod(dims)) if all(0 <= d <= 40 for d in dims) else bytes(16)
        (root / FILES["test_images"]).write_bytes(images)
        write_idx(root / FILES["test_labels"], np.full(count, min(max(labels, 0), 255), dtype=np.uint8))
        with time_limit(20):
            assert_clean(runner.invoke(app, ["eval", str(trained[0]), "--set", f"data.root={root}"]))


any_value = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(-2**70, 2**70), st.floats(),
                      st.text(max_size=6), st.sampled_from(["auto", "gru", "pixels", 2, 3]),
                      st.lists(st.integers(), max_size=3),
                      st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
                      st.lists(st.integers(-3, 30), max_size=5).map(torch.tensor),
                      st.lists(st.floats(-2, 2), min_size=1, max_size=5).map(torch.tensor))
fields = st.sampled_from([("data", f.name) for f in dataclasses.fields(DataMeta)] + [
    ("config",), ("model",), ("data",), ("model", "head.bias"), ("config", "model"), ("config", "data", "sequence"),
    ("config", "model", "hidden_size"), ("config", "model", "cell"), ("config", "model", "num_layers")])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=fields, value=any_value)
def test_eval_of_a_checkpoint_with_any_field_value_ends_in_a_message(trained: tuple[Path, Path], field: tuple,
                                                                     value: Any) -> None:
    def change(payload: dict) -> None:
        parent = payload
        for key in field[:-1]:
            parent = parent[key]
        parent[field[-1]] = value

    with tempfile.TemporaryDirectory() as folder:
        path = changed_checkpoint(str(trained[0]), Path(folder) / "best.pt", change)
        with time_limit(20):
            assert_clean(runner.invoke(app, ["eval", path]), codes=(0, 1, 2))
