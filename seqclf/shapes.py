"""The shapes inspector: every tensor shape and parameter of a configured model, read from a
real forward pass on zeros, with the formula behind each parameter's shape.

Needs no data files: an MNIST-format image is 28x28 with 10 classes, and the view
(`data.sequence`) decides the sequence length T and the features per step F.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from seqclf.cells import GATES
from seqclf.config import Config
from seqclf.data import input_size_of
from seqclf.errors import SeqclfError
from seqclf.model import SequenceClassifier, resolve_hidden_size

HEIGHT = WIDTH = 28  # MNIST-format images
NUM_CLASSES = 10

# What each tensor's dims are: B batch, T steps, F features per step, D directions (2 if
# bidirectional), H_out = proj_size or hidden_size (what h carries), classes = 10.
TENSORS = {"input": "(B, T, F)", "output": "(B, T, D*H_out)", "h_n": "(D*num_layers, B, H_out)",
           "c_n": "(D*num_layers, B, hidden)", "head_input": "(B, D*H_out)", "logits": "(B, classes)"}

_RECURRENT = re.compile(r"rnn\.(weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)_l(\d+)(_reverse)?")


def inspect_shapes(cfg: Config, batch: int = 8) -> dict[str, Any]:
    """Shapes of the input, the recurrent layer's `output`, `h_n`, `c_n`, the head's input and the
    logits for a batch of `batch` sequences, plus every parameter's shape and formula."""
    if batch < 1:
        raise SeqclfError(f"--batch: must be a positive number of sequences, got {batch}")
    seq_len = {"rows": HEIGHT, "columns": WIDTH}.get(cfg.data.sequence, HEIGHT * WIDTH)
    input_size = input_size_of(cfg.data.sequence, HEIGHT, WIDTH)
    cfg = resolve_hidden_size(cfg, input_size, NUM_CLASSES)
    model = SequenceClassifier(cfg.model, input_size, NUM_CLASSES).eval()

    x = torch.zeros(batch, seq_len, input_size)  # (B, T, F)
    with torch.no_grad():
        output, state = model.rnn(x)  # (B, T, D*H_out), state as torch returns it
        h_n, c_n = state if cfg.model.cell == "lstm" else (state, None)  # (D*layers, B, H_out), (D*layers, B, H)
        head_input = model.final_state(x)  # (B, D*H_out): the last layer's final states joined
        logits = model.head(head_input)  # (B, classes)

    formulas = {name: _formula(name, cfg, input_size) for name, _ in model.named_parameters()}
    parameters = {name: list(p.shape) for name, p in model.named_parameters()}
    for name, (text, value) in formulas.items():
        if list(value) != parameters[name]:  # the formulas document the layout; they must match it
            raise RuntimeError(f"{name}: formula {text} gives {value}, the model has {parameters[name]}")
    return {
        "input": list(x.shape), "output": list(output.shape), "h_n": list(h_n.shape),
        "c_n": list(c_n.shape) if c_n is not None else None, "head_input": list(head_input.shape),
        "logits": list(logits.shape), "parameters": parameters,
        "formulas": {name: text for name, (text, _) in formulas.items()},
        "total_parameters": sum(p.numel() for p in model.parameters()),
        "batch": batch, "seq_len": seq_len, "input_size": input_size, "hidden_size": cfg.model.hidden_size,
        "model": {"cell": cfg.model.cell, "impl": cfg.model.impl, "num_layers": cfg.model.num_layers,
                  "bidirectional": cfg.model.bidirectional, "proj_size": cfg.model.proj_size},
        "sequence": cfg.data.sequence,
    }


def _formula(name: str, cfg: Config, input_size: int) -> tuple[str, tuple[int, ...]]:
    """`rnn.weight_ih_l1` -> ("(4*hidden, 2*hidden)", (512, 256)): the symbols and their values."""
    m = cfg.model
    hidden = m.hidden_size
    assert isinstance(hidden, int)
    gates = GATES[m.cell]
    directions = 2 if m.bidirectional else 1
    h_out = ("proj", m.proj_size) if m.proj_size else ("hidden", hidden)  # what h carries between steps
    joined = (_times(directions, h_out[0]), directions * h_out[1])  # a later layer reads both directions
    rows = (_times(gates, "hidden"), gates * hidden)  # one block of rows per gate
    if name == "head.weight":
        dims = [("classes", NUM_CLASSES), joined]
    elif name == "head.bias":
        dims = [("classes", NUM_CLASSES)]
    else:
        match = _RECURRENT.fullmatch(name)
        if match is None:
            raise RuntimeError(f"no shape formula for parameter {name}")
        kind, layer = match.group(1), int(match.group(2))
        layer_input = ("input", input_size) if layer == 0 else joined
        dims = {"weight_ih": [rows, layer_input], "weight_hh": [rows, h_out], "bias_ih": [rows],
                "bias_hh": [rows], "weight_hr": [("proj", m.proj_size), ("hidden", hidden)]}[kind]
    text = "(" + ", ".join(symbol for symbol, _ in dims) + ("," if len(dims) == 1 else "") + ")"
    return text, tuple(value for _, value in dims)


def _times(factor: int, symbol: str) -> str:
    return symbol if factor == 1 else f"{factor}*{symbol}"
