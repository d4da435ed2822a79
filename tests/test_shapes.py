"""`seqclf shapes`: tensor shapes from a real forward pass, parameter shapes with their formulas."""

from __future__ import annotations

import math

import pytest
from helpers import ROOT, cli_json, set_args
from torch import nn
from typer.testing import CliRunner

from seqclf.cli.app import app
from seqclf.config import load_config
from seqclf.model.classifier import parameter_count
from seqclf.model.shapes import inspect_shapes

runner = CliRunner()


def shapes_json(*args: str) -> dict:
    return cli_json("shapes", *args)


def test_bidirectional_two_layer_lstm_with_projection() -> None:
    out = shapes_json("--config", str(ROOT / "configs/bilstm.yaml"), "--batch", "5",
                      *set_args(["model.hidden_size=20", "model.proj_size=6"]))
    assert out["input"] == [5, 28, 28]
    assert out["output"] == [5, 28, 12]  # both directions of the last layer, each projected to 6
    assert out["h_n"] == [4, 5, 6] and out["c_n"] == [4, 5, 20]  # (D*num_layers, B, H_out) / (.., hidden)
    assert out["head_input"] == [5, 12] and out["logits"] == [5, 10]
    # the parameter layout is torch's own nn.LSTM's, name for name and shape for shape
    reference = nn.LSTM(28, 20, num_layers=2, bidirectional=True, proj_size=6, batch_first=True)
    expected = {f"rnn.{name}": list(p.shape) for name, p in reference.named_parameters()}
    expected.update({"head.weight": [10, 12], "head.bias": [10]})
    assert out["parameters"] == expected
    formulas = out["formulas"]
    assert formulas["rnn.weight_ih_l0"] == "(4*hidden, input)"
    assert formulas["rnn.weight_ih_l1_reverse"] == "(4*hidden, 2*proj)"
    assert formulas["rnn.weight_hh_l1"] == "(4*hidden, proj)"
    assert formulas["rnn.weight_hr_l0_reverse"] == "(proj, hidden)"
    assert formulas["rnn.bias_hh_l0"] == "(4*hidden,)"
    assert formulas["head.weight"] == "(classes, 2*proj)" and formulas["head.bias"] == "(classes,)"
    assert out["total_parameters"] == sum(math.prod(s) for s in out["parameters"].values())


@pytest.mark.parametrize("cell, gates, symbol", [("gru", 3, "3*hidden"), ("rnn", 1, "hidden")])
def test_gru_and_rnn_have_no_c_n_and_their_own_gate_count(cell: str, gates: int, symbol: str) -> None:
    out = shapes_json("--config", str(ROOT / "configs/lstm.yaml"), "--batch", "3",
                      *set_args([f"model.cell={cell}", "model.hidden_size=16", "model.num_layers=2"]))
    assert out["c_n"] is None and out["h_n"] == [2, 3, 16] and out["output"] == [3, 28, 16]
    assert out["parameters"]["rnn.weight_ih_l0"] == [gates * 16, 28]
    assert out["parameters"]["rnn.weight_ih_l1"] == [gates * 16, 16]
    assert out["formulas"]["rnn.weight_ih_l0"] == f"({symbol}, input)"
    assert out["formulas"]["rnn.weight_ih_l1"] == f"({symbol}, hidden)"
    assert out["formulas"]["rnn.weight_hh_l0"] == f"({symbol}, hidden)"
    cfg = load_config(ROOT / "configs/lstm.yaml", [f"model.cell={cell}", "model.hidden_size=16",
                                                    "model.num_layers=2"])
    assert out["total_parameters"] == sum(math.prod(s) for s in out["parameters"].values())
    assert out["total_parameters"] == parameter_count(cfg.model, 28, 10)


@pytest.mark.parametrize("sequence, input_shape", [("rows", [4, 28, 28]), ("columns", [4, 28, 28]),
                                                    ("pixels", [4, 784, 1]), ("permuted_pixels", [4, 784, 1])])
def test_the_view_sets_the_input_and_first_layer(sequence: str, input_shape: list[int]) -> None:
    cfg = load_config(ROOT / "configs/lstm.yaml", [f"data.sequence={sequence}", "model.hidden_size=8"])
    out = inspect_shapes(cfg, batch=4)
    assert out["input"] == input_shape and out["output"] == [4, input_shape[1], 8]
    assert out["parameters"]["rnn.weight_ih_l0"] == [32, input_shape[2]]


@pytest.mark.parametrize("impl", ["cell", "scratch"])
def test_every_implementation_gives_the_same_shapes(impl: str) -> None:
    overrides = ["model.hidden_size=12", "model.num_layers=2", "model.bidirectional=true", "model.proj_size=5"]
    fused = inspect_shapes(load_config(ROOT / "configs/lstm.yaml", overrides), batch=3)
    other = inspect_shapes(load_config(ROOT / "configs/lstm.yaml", [*overrides, f"model.impl={impl}"]), batch=3)
    assert {k: v for k, v in other.items() if k != "model"} == {k: v for k, v in fused.items() if k != "model"}


def test_auto_hidden_size_is_resolved_within_the_budget() -> None:
    cfg = load_config(ROOT / "configs/gru.yaml", ["model.hidden_size=auto", "model.param_budget=50000"])
    out = inspect_shapes(cfg, batch=2)
    hidden = out["hidden_size"]
    assert out["total_parameters"] <= 50000 and out["h_n"] == [1, 2, hidden]
    bigger = load_config(ROOT / "configs/gru.yaml", [f"model.hidden_size={hidden + 1}"])
    assert parameter_count(bigger.model, 28, 10) > 50000  # the largest that fits


def test_human_output_shows_tensors_formulas_and_the_total() -> None:
    result = runner.invoke(app, ["shapes", "--config", str(ROOT / "configs/bilstm.yaml")])
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "(8, 28, 256)" in text and "(4, 8, 128)" in text  # output, h_n at the default batch of 8
    line = next(line for line in text.splitlines() if line.startswith("rnn.weight_ih_l1 "))
    assert line.split()[1:] == ["(4*hidden,", "2*hidden)", "(512,", "256)", "131,072"]
    total = next(line for line in text.splitlines() if line.startswith("total"))
    assert total.split()[-1] == f"{inspect_shapes(load_config(ROOT / 'configs/bilstm.yaml'))['total_parameters']:,}"


@pytest.mark.parametrize("args, fragment", [
    (["--batch", "0"], "--batch"),
    (["--set", "model.cell=lstmm"], "model.cell"),
])
def test_bad_input_is_a_message_and_exit_2(args: list[str], fragment: str) -> None:
    result = runner.invoke(app, ["shapes", "--config", str(ROOT / "configs/lstm.yaml"), *args])
    assert result.exit_code == 2 and fragment in result.output and "Traceback" not in result.output
