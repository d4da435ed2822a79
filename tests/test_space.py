"""The search space of `seqclf tune` (seqclf/search/space.py): every problem at once, kinds per key type, grids."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import ROOT

from seqclf.config import ConfigError, load_config
from seqclf.search.space import Distribution, load_space, parse_space


def test_shipped_space_is_valid() -> None:
    space = load_space(ROOT / "configs/space.yaml", load_config(ROOT / "configs/lstm.yaml"))
    assert {"train.lr", "model.hidden_size", "model.cell", "model.num_layers", "model.bidirectional",
            "model.dropout", "train.batch_size", "train.grad_clip"} <= set(space)
    assert space["train.lr"].log and space["model.hidden_size"].grid() == [64, 96, 128]
    fast = load_space(ROOT / "configs/space_fast.yaml", load_config(ROOT / "configs/fashion_fast.yaml"))
    assert {"train.precision", "train.epochs", "train.scheduler"} <= set(fast)


def test_space_reports_every_problem_at_once() -> None:
    raw = {"model.hiden_size": {"int": [8, 64]},  # a typo
           "model.dropout": {"uniform": [0.0, 1.5]},  # past what the key accepts
           "train.lr": {"log_uniform": [0.0, 0.1]},  # log needs a positive low end
           "train.batch_size": {"uniform": [16.0, 64.0]},  # an integer key
           "model.cell": {"choice": ["lstm", "transformer"]},  # not one of the key's choices
           "model.num_layers": {"int": [3, 2]},  # low above high
           "output.dir": {"choice": ["a", "b"]},  # tune sets it
           "train.epochs": {"int": [0, 3]},  # epochs must be positive
           "seed": [1, 2]}  # not a distribution
    with pytest.raises(ConfigError) as caught:
        parse_space(raw, load_config(None), "space.yaml")
    message = str(caught.value)
    assert "space.yaml" in message
    for expected in ("model.hiden_size: unknown key; did you mean `model.hidden_size`?",
                     "model.dropout: 1.5 is outside", "must be in [0, 1)", "train.lr: log_uniform needs a positive",
                     "train.batch_size: an integer key takes int or log_int", "'transformer' is outside",
                     "model.num_layers: low (3) must be below high (2)", "output.dir: cannot be searched",
                     "train.epochs: 0 is outside", "seed: expected a mapping"):
        assert expected in message, expected
    assert len(caught.value.problems) == 9  # one per entry


def test_grids_list_every_value_of_a_stepped_or_discrete_range() -> None:
    base = load_config(None)
    space = parse_space({"model.hidden_size": {"int": [8, 32], "step": 8}, "model.num_layers": {"int": [1, 3]},
                         "model.dropout": {"uniform": [0.0, 0.3], "step": 0.1},
                         "train.lr": {"log_uniform": ["1e-4", 1.0e-2]},  # YAML's 1e-4 is a string: accepted
                         "model.cell": {"choice": ["gru", "rnn"]}}, base)
    assert space["model.hidden_size"].grid() == [8, 16, 24, 32]
    assert space["model.num_layers"].grid() == [1, 2, 3]
    assert space["model.dropout"].grid() == [0.0, 0.1, 0.2, 0.3]  # no 0.30000000000000004
    assert space["train.lr"].grid() is None and space["train.lr"].log and space["train.lr"].low == 1e-4
    assert space["model.cell"].grid() == ["gru", "rnn"]
    assert Distribution("train.lr", "uniform", 0.1, 0.2).grid() is None  # continuous
    assert space["model.hidden_size"].describe() == "int [8, 32] step 8"
    assert space["model.cell"].describe() == "choice [gru, rnn]"  # as the space file writes it
    assert Distribution("model.bidirectional", "choice", choices=(False, True)).describe() == "choice [false, true]"


@pytest.mark.parametrize("raw, fragment", [
    ({}, "must map dotted config keys to distributions"),
    ({"model.cell": {"choice": ["gru", "gru"]}}, "choice lists a value twice"),
    ({"model.cell": {"choice": []}}, "choice takes a non-empty list"),
    ({"model.bidirectional": {"uniform": [0, 1]}}, "a bool key takes {choice: [...]}"),
    ({"train.lr": {"uniform": [0.1, 0.2], "int": [1, 2]}}, "give exactly one of"),
    ({"train.lr": {"log_uniform": [1.0e-4, 1.0e-2], "step": 1.0e-3}}, "cannot go with log_uniform"),
    ({"model.hidden_size": {"int": [8.5, 16]}}, "int takes [low, high] (ints)"),
    ({"model.dropout": {"int": [0, 1]}}, "a float key takes uniform or log_uniform, not int"),
])
def test_each_malformed_entry_is_named(raw: dict, fragment: str) -> None:
    with pytest.raises(ConfigError, match="space") as caught:
        parse_space(raw, load_config(None))
    assert fragment in str(caught.value), str(caught.value)


def test_a_range_is_checked_against_the_base_config(tmp_path: Path) -> None:
    """Each end of a range must make a valid config together with the base: proj_size below its hidden_size."""
    base = load_config(None, ["model.cell=lstm", "model.hidden_size=16"])
    with pytest.raises(ConfigError, match="model.proj_size: 16 is outside"):
        parse_space({"model.proj_size": {"int": [0, 16]}}, base)
    path = tmp_path / "space.yaml"
    path.write_text("model.proj_size: {int: [0, 8]}\n")
    assert load_space(path, base)["model.proj_size"].grid() == list(range(9))


@pytest.mark.parametrize(("raw", "base", "noted"), [
    ({"model.num_layers": {"int": [1, 2]}, "model.dropout": {"uniform": [0.0, 0.3]}}, [], True),  # the shipped one
    ({"model.num_layers": {"int": [2, 3]}, "model.dropout": {"uniform": [0.0, 0.3]}}, [], False),  # never 1 layer
    ({"model.dropout": {"uniform": [0.0, 0.3]}}, ["model.num_layers=2"], False),
    ({"model.dropout": {"uniform": [0.1, 0.3]}}, [], True),  # 1 layer in the base config
    ({"model.num_layers": {"choice": [1, 3]}}, ["model.dropout=0.25"], True),  # dropout from the base config
    ({"model.num_layers": {"int": [1, 2]}, "model.dropout": {"choice": [0.0]}}, [], False),
])
def test_a_space_that_can_draw_dropout_with_one_layer_says_so_once(raw: dict, base: list[str], noted: bool) -> None:
    from seqclf.search.space import dropout_note

    config = load_config(None, base)
    note = dropout_note(parse_space(raw, config), config)
    assert (note is not None) == noted
    if noted:
        assert "model.dropout" in note and "model.num_layers=1" in note and "no effect" in note
