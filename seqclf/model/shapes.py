"""The shapes inspector: every tensor shape and parameter of a configured model, read from a
real forward pass on zeros, with the formula behind each parameter's shape.

Needs no data files: an MNIST-format image is 28x28 with 10 classes, and the view
(`data.sequence`) decides the sequence length T and the features per step F.
"""

from __future__ import annotations

from typing import Any

import torch

from seqclf.config import Config
from seqclf.config.limits import check_memory, forward_bytes
from seqclf.data.views import view_shape
from seqclf.errors import SeqclfError
from seqclf.model.cells import GATES, formula_of, shape_of
from seqclf.model.classifier import (
    SequenceClassifier,
    check_fits,
    parameter_layout,
    resolve_hidden_size,
)

HEIGHT = WIDTH = 28  # MNIST-format images
NUM_CLASSES = 10

# What each tensor's dims are: B batch, T steps, F features per step, D directions (2 if
# bidirectional), H_out = proj_size or hidden_size (what h carries), classes = 10.
TENSORS = {"input": "(B, T, F)", "output": "(B, T, D*H_out)", "h_n": "(D*num_layers, B, H_out)",
           "c_n": "(D*num_layers, B, hidden)", "head_input": "(B, D*H_out)", "logits": "(B, classes)"}


def inspect_shapes(cfg: Config, batch: int = 8) -> dict[str, Any]:
    """Shapes of the input, the recurrent layer's `output`, `h_n`, `c_n`, the head's input and the
    logits for a batch of `batch` sequences, plus every parameter's shape and formula."""
    if batch < 1:
        raise SeqclfError(f"--batch: must be a positive number of sequences, got {batch}")
    seq_len, input_size = view_shape(cfg.data.sequence, HEIGHT, WIDTH)
    cfg = resolve_hidden_size(cfg, input_size, NUM_CLASSES)
    check_fits(cfg.model, input_size, NUM_CLASSES)
    check_memory(f"a forward pass of --batch {batch}", forward_bytes(cfg.model, GATES[cfg.model.cell], batch, seq_len,
                                                                     input_size),
                 "lower --batch")
    model = SequenceClassifier(cfg.model, input_size, NUM_CLASSES).eval()

    x = torch.zeros(batch, seq_len, input_size)  # (B, T, F)
    with torch.no_grad():
        output, state = model.rnn(x)  # (B, T, D*H_out), state as torch returns it
        h_n, c_n = state if cfg.model.cell == "lstm" else (state, None)  # (D*layers, B, H_out), (D*layers, B, H)
        head_input = model.final_state(x)  # (B, D*H_out): the last layer's final states joined
        logits = model.head(head_input)  # (B, classes)

    layout = parameter_layout(cfg.model, input_size, NUM_CLASSES)
    parameters = {name: list(p.shape) for name, p in model.named_parameters()}
    for name, shape in parameters.items():
        if name not in layout or list(shape_of(layout[name])) != shape:  # the layout documents the model
            raise RuntimeError(f"{name}: the parameter layout says {layout.get(name)}, the model has {shape}")
    return {
        "input": list(x.shape), "output": list(output.shape), "h_n": list(h_n.shape),
        "c_n": list(c_n.shape) if c_n is not None else None, "head_input": list(head_input.shape),
        "logits": list(logits.shape), "parameters": parameters,
        "formulas": {name: formula_of(layout[name]) for name in parameters},
        "total_parameters": sum(p.numel() for p in model.parameters()),
        "batch": batch, "seq_len": seq_len, "input_size": input_size, "hidden_size": cfg.model.hidden_size,
        "model": {"cell": cfg.model.cell, "impl": cfg.model.impl, "num_layers": cfg.model.num_layers,
                  "bidirectional": cfg.model.bidirectional, "proj_size": cfg.model.proj_size},
        "sequence": cfg.data.sequence,
    }
