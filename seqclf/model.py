"""The classifier: a recurrent layer reads the sequence, a linear head reads its final state."""

from __future__ import annotations

import warnings

import torch
from torch import nn

from seqclf.cells import IMPLEMENTATIONS
from seqclf.config import AUTO, Config, ModelConfig, replace

# torch says so on every forward of an LSTM with proj_size on CPU; it is expected, not actionable.
warnings.filterwarnings("ignore", message="LSTM with projections is not supported with oneDNN")


class SequenceClassifier(nn.Module):
    """Recurrent layer (batch_first) + linear head on the last layer of `h_n`.

    With bidirectional=True the head sees the last layer's forward and backward final
    states joined, i.e. `2 * H_out` features, where H_out = proj_size or hidden_size.
    """

    def __init__(self, cfg: ModelConfig, input_size: int, num_classes: int = 10) -> None:
        super().__init__()
        if not isinstance(cfg.hidden_size, int):
            raise ValueError("resolve model.hidden_size (auto) before building the model")
        self.cell = cfg.cell
        self.num_layers = cfg.num_layers
        self.directions = 2 if cfg.bidirectional else 1
        self.rnn = IMPLEMENTATIONS[cfg.impl](
            cfg.cell, input_size, cfg.hidden_size, num_layers=cfg.num_layers, bias=cfg.bias,
            batch_first=True, dropout=cfg.dropout, bidirectional=cfg.bidirectional,
            proj_size=cfg.proj_size, nonlinearity=cfg.nonlinearity,
        )
        self.h_out = cfg.proj_size or cfg.hidden_size
        self.head = nn.Linear(self.directions * self.h_out, num_classes)

    def final_state(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T, F) -> the last layer's final hidden state(s), (B, D*H_out)."""
        _, state = self.rnn(x)
        h_n = state[0] if self.cell == "lstm" else state  # (D*num_layers, B, H_out)
        # torch orders h_n layer-major: index = layer * D + direction.
        last = h_n.view(self.num_layers, self.directions, x.shape[0], self.h_out)[-1]  # (D, B, H_out)
        return last.transpose(0, 1).reshape(x.shape[0], self.directions * self.h_out)  # (B, D*H_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.final_state(x))  # (B, num_classes)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def parameter_count(cfg: ModelConfig, input_size: int, num_classes: int = 10) -> int:
    """Parameters of the model `cfg` describes, computed from the fused layer's layout."""
    gates = {"rnn": 1, "lstm": 4, "gru": 3}[cfg.cell]
    hidden = cfg.hidden_size
    assert isinstance(hidden, int)
    h_out = cfg.proj_size or hidden
    directions = 2 if cfg.bidirectional else 1
    total = 0
    for layer in range(cfg.num_layers):
        layer_input = input_size if layer == 0 else directions * h_out
        per_direction = gates * hidden * (layer_input + h_out)  # weight_ih, weight_hh
        per_direction += 2 * gates * hidden if cfg.bias else 0  # bias_ih, bias_hh
        per_direction += h_out * hidden if cfg.proj_size else 0  # weight_hr
        total += directions * per_direction
    return total + (directions * h_out + 1) * num_classes  # the head


def resolve_hidden_size(cfg: Config, input_size: int, num_classes: int = 10) -> Config:
    """For `hidden_size: auto`, the largest hidden size whose model fits `param_budget`.

    The resolved config keeps both keys (hidden_size: 97, param_budget: N); a config that gives an
    integer hidden_size with a param_budget is checked against it.
    """
    from seqclf.errors import SeqclfError

    model = cfg.model
    if model.hidden_size != AUTO:
        count = parameter_count(model, input_size, num_classes)
        if model.param_budget is not None and count > model.param_budget:
            raise SeqclfError(f"model.param_budget: a {model.cell} with hidden_size {model.hidden_size} has "
                              f"{count:,} parameters, over the budget of "
                              f"{model.param_budget:,}; use model.hidden_size=auto to pick the largest that fits")
        return cfg
    assert model.param_budget is not None

    def fits(hidden: int) -> bool:
        proj = model.proj_size if model.proj_size < hidden else 0
        trial = replace(replace(cfg, "model.hidden_size", hidden), "model.proj_size", proj).model
        return parameter_count(trial, input_size, num_classes) <= model.param_budget

    if not fits(max(1, model.proj_size + 1)):
        raise SeqclfError(f"model.param_budget ({model.param_budget}) is too small for even the smallest "
                          f"{model.cell} model; raise it")
    low, high = max(1, model.proj_size + 1), max(2, model.proj_size + 2)
    while fits(high):  # parameter count grows monotonically with hidden size
        low, high = high, high * 2
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if fits(mid) else (low, mid)
    return replace(cfg, "model.hidden_size", low)
