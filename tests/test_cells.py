"""The cell and scratch layers against torch's fused layer: same parameters, outputs and gradients."""

from __future__ import annotations

import pytest
import torch

from seqclf.model.cells import (
    IMPLEMENTATIONS,
    CellRecurrent,
    ScratchRecurrent,
    fused_recurrent,
)

BATCH, STEPS, INPUT, HIDDEN, PROJ = 3, 5, 4, 6, 3
HAND_MADE = {"cell": CellRecurrent, "scratch": ScratchRecurrent}
# torch says so for its fused LSTM with proj_size on CPU; it still computes it (the slower way).
pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")

# Every combination: (cell, num_layers, bidirectional, bias, proj_size).
COMBOS = [(cell, layers, bidirectional, bias, proj)
          for cell in ("rnn", "lstm", "gru")
          for layers in (1, 2, 3)
          for bidirectional in (False, True)
          for bias in (True, False)
          for proj in ((0, PROJ) if cell == "lstm" else (0,))]


def combo_id(combo: tuple) -> str:
    cell, layers, bidirectional, bias, proj = combo
    return f"{cell}-L{layers}-{'bi' if bidirectional else 'uni'}-{'bias' if bias else 'nobias'}-P{proj}"


@pytest.fixture(autouse=True)
def seed() -> None:
    torch.manual_seed(0)


def pair(impl: str, cell: str, **options) -> tuple[torch.nn.Module, torch.nn.Module]:
    """A fused layer and a hand-made one holding a copy of its weights (loaded strictly)."""
    fused = fused_recurrent(cell, INPUT, HIDDEN, **options)
    other = HAND_MADE[impl](cell, INPUT, HIDDEN, **options)
    other.load_state_dict(fused.state_dict(), strict=True)
    return fused, other


def initial_state(cell: str, layers: int, bidirectional: bool, proj: int, batch: int = BATCH):
    """A random hx in torch's shapes, a tuple for LSTM."""
    directions = 2 if bidirectional else 1
    h0 = torch.randn(directions * layers, batch, proj or HIDDEN)
    if cell == "lstm":
        return h0, torch.randn(directions * layers, batch, HIDDEN)
    return h0


def split(cell: str, result):
    """(output, h_n, c_n or None) from either return form."""
    output, state = result
    return (output, *state) if cell == "lstm" else (output, state, None)


def run(module: torch.nn.Module, cell: str, x: torch.Tensor, hx, weights: list[torch.Tensor]):
    """Forward, then backward through a loss that weighs every output, h_n and c_n element at random.

    Returns the outputs, the gradients of every parameter (by name), of x and of hx.
    """
    x = x.clone().requires_grad_()
    if hx is not None:
        hx = tuple(s.clone().requires_grad_() for s in hx) if cell == "lstm" else hx.clone().requires_grad_()
    outputs = split(cell, module(x, hx))
    loss = sum((value * weight).sum() for value, weight in zip(outputs, weights) if value is not None)
    module.zero_grad()
    loss.backward()
    grads = {name: p.grad for name, p in module.named_parameters()}
    grads["input"] = x.grad
    if hx is not None:
        for i, state in enumerate(hx if cell == "lstm" else (hx,)):
            grads[f"hx{i}"] = state.grad
    return outputs, grads


def assert_same(cell: str, fused: torch.nn.Module, other: torch.nn.Module, x: torch.Tensor, hx) -> None:
    with torch.no_grad():
        shapes = [t.shape for t in split(cell, fused(x, hx)) if t is not None]
    weights = [torch.randn(s) for s in shapes] + ([None] if cell != "lstm" else [])
    expected, expected_grads = run(fused, cell, x, hx, weights)
    actual, actual_grads = run(other, cell, x, hx, weights)
    for name, want, got in zip(("output", "h_n", "c_n"), expected, actual):
        if want is None:
            assert got is None
            continue
        assert got.shape == want.shape, name
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5, msg=lambda m, name=name: f"{name}: {m}")
    assert expected_grads.keys() == actual_grads.keys()
    for name, want in expected_grads.items():
        torch.testing.assert_close(actual_grads[name], want, atol=1e-4, rtol=1e-4,
                                   msg=lambda m, name=name: f"grad {name}: {m}")


@pytest.mark.parametrize("with_state", [False, True], ids=["zeros", "hx"])
@pytest.mark.parametrize("combo", COMBOS, ids=combo_id)
@pytest.mark.parametrize("impl", list(HAND_MADE))
def test_matches_fused(impl: str, combo: tuple, with_state: bool) -> None:
    cell, layers, bidirectional, bias, proj = combo
    options = dict(num_layers=layers, bidirectional=bidirectional, bias=bias, proj_size=proj)
    fused, other = pair(impl, cell, **options)
    x = torch.randn(BATCH, STEPS, INPUT)
    hx = initial_state(cell, layers, bidirectional, proj) if with_state else None
    assert_same(cell, fused, other, x, hx)


@pytest.mark.parametrize("impl", list(HAND_MADE))
def test_relu_rnn(impl: str) -> None:
    fused, other = pair(impl, "rnn", num_layers=2, bidirectional=True, nonlinearity="relu")
    assert_same("rnn", fused, other, torch.randn(BATCH, STEPS, INPUT), initial_state("rnn", 2, True, 0))


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("impl", list(HAND_MADE))
def test_time_major(impl: str, cell: str) -> None:
    proj = PROJ if cell == "lstm" else 0
    fused, other = pair(impl, cell, num_layers=2, bidirectional=True, batch_first=False, proj_size=proj)
    x = torch.randn(STEPS, BATCH, INPUT)  # (T, B, I)
    assert_same(cell, fused, other, x, initial_state(cell, 2, True, proj))


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("impl", list(HAND_MADE))
def test_unbatched(impl: str, cell: str) -> None:
    fused, other = pair(impl, cell, num_layers=2, bidirectional=True)
    x = torch.randn(STEPS, INPUT)  # (T, I): no batch dimension, whatever batch_first says
    hx = initial_state(cell, 2, True, 0, batch=1)
    hx = tuple(s.squeeze(1) for s in hx) if cell == "lstm" else hx.squeeze(1)
    assert_same(cell, fused, other, x, hx)


@pytest.mark.parametrize("combo", COMBOS, ids=combo_id)
def test_state_dict_layout(combo: tuple) -> None:
    """Same keys, order and shapes as the fused layer; checkpoints load strictly either way."""
    cell, layers, bidirectional, bias, proj = combo
    options = dict(num_layers=layers, bidirectional=bidirectional, bias=bias, proj_size=proj)
    modules = {impl: IMPLEMENTATIONS[impl](cell, INPUT, HIDDEN, **options) for impl in IMPLEMENTATIONS}
    layout = {impl: [(k, v.shape) for k, v in m.state_dict().items()] for impl, m in modules.items()}
    assert layout["cell"] == layout["fused"] and layout["scratch"] == layout["fused"]
    for source in modules.values():
        for target in modules.values():
            target.load_state_dict(source.state_dict(), strict=True)
    assert list(modules["scratch"].children()) == [] and list(modules["cell"].children()) == []


@pytest.mark.parametrize("impl", list(HAND_MADE))
def test_same_initialisation_as_fused(impl: str) -> None:
    """Same seed, same weights: the parameters are drawn in torch's order from U(-1/sqrt(H), 1/sqrt(H))."""
    options = dict(num_layers=2, bidirectional=True, proj_size=PROJ)
    torch.manual_seed(1)
    fused = fused_recurrent("lstm", INPUT, HIDDEN, **options)
    torch.manual_seed(1)
    other = HAND_MADE[impl]("lstm", INPUT, HIDDEN, **options)
    for (name, want), got in zip(fused.state_dict().items(), other.state_dict().values()):
        assert torch.equal(got, want), name


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("impl", list(HAND_MADE))
def test_dropout_only_between_layers(impl: str, cell: str) -> None:
    x = torch.randn(BATCH, STEPS, INPUT)
    fused, other = pair(impl, cell, num_layers=2, dropout=0.5)
    fused.eval(), other.eval()  # eval: no dropout at all, equal to fused
    assert_same(cell, fused, other, x, None)

    other.train()
    with torch.no_grad():
        plain = split(cell, other.eval()(x))
        torch.manual_seed(2)
        dropped = split(cell, other.train()(x))
    # Layer 0's own final state is untouched, layer 1's input (so its output) is dropped out...
    torch.testing.assert_close(dropped[1][0], plain[1][0])
    assert not torch.allclose(dropped[0], plain[0])
    # ...but not the last layer's output: it still ends in that layer's h_n.
    torch.testing.assert_close(dropped[0][:, -1], dropped[1][-1])

    # One layer: nothing to drop between, train mode equals eval mode.
    single = HAND_MADE[impl](cell, INPUT, HIDDEN, dropout=0.5).train()
    with torch.no_grad():
        torch.testing.assert_close(single(x)[0], single.eval()(x)[0])


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("impl", list(HAND_MADE))
def test_dropout_draws_match_fused_on_cpu(impl: str, cell: str) -> None:
    """On CPU torch's fused layer applies F.dropout to each layer's output, so the same seed drops the same units."""
    fused, other = pair(impl, cell, num_layers=3, bidirectional=True, dropout=0.5)
    fused.train(), other.train()
    x = torch.randn(BATCH, STEPS, INPUT)
    with torch.no_grad():
        torch.manual_seed(3)
        want = split(cell, fused(x))
        torch.manual_seed(3)
        got = split(cell, other(x))
    for w, g in zip(want, got):
        if w is not None:
            torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("impl", list(IMPLEMENTATIONS))
@pytest.mark.parametrize("cell, options", [
    ("conv", {}),
    ("gru", {"proj_size": 2}),
    ("lstm", {"proj_size": HIDDEN}),
    ("lstm", {"nonlinearity": "relu"}),
    ("rnn", {"nonlinearity": "sigmoid"}),
])
def test_bad_options_raise(impl: str, cell: str, options: dict) -> None:
    with pytest.raises(ValueError):
        IMPLEMENTATIONS[impl](cell, INPUT, HIDDEN, **options)


@pytest.mark.parametrize("impl", list(HAND_MADE))
def test_bad_shapes_raise(impl: str) -> None:
    layer = HAND_MADE[impl]("lstm", INPUT, HIDDEN, num_layers=2)
    with pytest.raises(ValueError, match="input"):
        layer(torch.randn(BATCH, STEPS, INPUT + 1))
    with pytest.raises(ValueError, match="h_0"):
        layer(torch.randn(BATCH, STEPS, INPUT), (torch.zeros(1, BATCH, HIDDEN), torch.zeros(2, BATCH, HIDDEN)))
    with pytest.raises(ValueError, match="c_0"):
        layer(torch.randn(BATCH, STEPS, INPUT), (torch.zeros(2, BATCH, HIDDEN), torch.zeros(2, BATCH, HIDDEN + 1)))
