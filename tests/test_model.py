"""The classifier: every option reaches the torch layer, and the head reads the last layer of h_n."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from seqclf.config import ModelConfig, load_config
from seqclf.model.classifier import (
    SequenceClassifier,
    count_parameters,
    parameter_count,
    resolve_hidden_size,
)

CASES = list(itertools.product(["rnn", "lstm", "gru"], [False, True], [1, 2]))


@pytest.mark.parametrize("cell,bidirectional,num_layers", CASES)
def test_head_reads_last_layer_of_h_n(cell: str, bidirectional: bool, num_layers: int) -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(cell=cell, hidden_size=6, num_layers=num_layers, bidirectional=bidirectional)
    model = SequenceClassifier(cfg, input_size=5, num_classes=10).eval()
    x = torch.randn(4, 7, 5)  # (B, T, F)
    _, state = model.rnn(x)
    h_n = state[0] if cell == "lstm" else state  # (D*num_layers, B, H)
    directions = 2 if bidirectional else 1
    assert h_n.shape == (directions * num_layers, 4, 6)
    # The last layer's states are the last D entries; forward first, then backward.
    expected = torch.cat([h_n[-2], h_n[-1]], dim=1) if bidirectional else h_n[-1]  # (B, D*H)
    assert torch.equal(model.final_state(x), expected)
    assert torch.equal(model(x), model.head(expected))
    assert model(x).shape == (4, 10)


def test_bidirectional_final_states_are_the_ends_of_output() -> None:
    """Forward state = output at the last step, backward state = output at the first step."""
    torch.manual_seed(0)
    model = SequenceClassifier(ModelConfig(cell="gru", hidden_size=3, bidirectional=True), 2).eval()
    x = torch.randn(2, 5, 2)
    output, _ = model.rnn(x)  # (B, T, 2*H)
    joined = model.final_state(x)
    assert torch.allclose(joined[:, :3], output[:, -1, :3])
    assert torch.allclose(joined[:, 3:], output[:, 0, 3:])


def test_every_option_reaches_the_torch_layer() -> None:
    cfg = ModelConfig(cell="lstm", hidden_size=8, num_layers=2, bidirectional=True, dropout=0.25,
                      proj_size=3, bias=False)
    rnn = SequenceClassifier(cfg, input_size=5).rnn
    assert isinstance(rnn, nn.LSTM)
    assert (rnn.hidden_size, rnn.num_layers, rnn.bidirectional, rnn.dropout, rnn.proj_size, rnn.bias,
            rnn.batch_first) == (8, 2, True, 0.25, 3, False, True)
    relu = SequenceClassifier(ModelConfig(cell="rnn", hidden_size=4, nonlinearity="relu"), 5).rnn
    assert isinstance(relu, nn.RNN) and relu.nonlinearity == "relu"
    model = SequenceClassifier(cfg, input_size=5)
    assert model.head.in_features == 2 * 3  # both directions of the projected state
    assert model(torch.randn(2, 4, 5)).shape == (2, 10)


@pytest.mark.parametrize("cell,bidirectional,num_layers", CASES)
@pytest.mark.parametrize("bias", [True, False])
def test_parameter_count_matches_the_module(cell: str, bidirectional: bool, num_layers: int, bias: bool) -> None:
    cfg = ModelConfig(cell=cell, hidden_size=7, num_layers=num_layers, bidirectional=bidirectional, bias=bias)
    assert parameter_count(cfg, 28) == count_parameters(SequenceClassifier(cfg, 28))
    if cell == "lstm":
        proj = ModelConfig(cell=cell, hidden_size=7, num_layers=num_layers, bidirectional=bidirectional,
                           bias=bias, proj_size=3)
        assert parameter_count(proj, 28) == count_parameters(SequenceClassifier(proj, 28))


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_auto_hidden_size_is_the_largest_within_budget(cell: str) -> None:
    cfg = load_config(None, [f"model.cell={cell}", "model.hidden_size=auto", "model.param_budget=50000",
                             "model.num_layers=2"])
    resolved = resolve_hidden_size(cfg, 28)
    hidden = resolved.model.hidden_size
    assert isinstance(hidden, int)
    assert count_parameters(SequenceClassifier(resolved.model, 28)) <= 50000
    bigger = load_config(None, [f"model.cell={cell}", f"model.hidden_size={hidden + 1}", "model.num_layers=2"])
    assert count_parameters(SequenceClassifier(bigger.model, 28)) > 50000
