"""The classifier: a recurrent layer reads the sequence, a linear head reads its final state."""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from seqclf.config import AUTO, Config, ModelConfig, replace
from seqclf.config.limits import check_parameters
from seqclf.errors import SeqclfError
from seqclf.model import cells
from seqclf.model.cells import IMPLEMENTATIONS, Dims

# torch says so on every forward of an LSTM with proj_size on CPU; it is expected, not actionable.
warnings.filterwarnings("ignore", message="LSTM with projections is not supported with oneDNN")
# cuDNN says so when the bf16 copies of the weights (recurrent()) are not one flat buffer; they cannot be.
warnings.filterwarnings("ignore", message="RNN module weights are not part of single contiguous chunk")


class SequenceClassifier(nn.Module):
    """Recurrent layer (batch_first) + linear head on the last layer of `h_n`.

    With bidirectional=True the head sees the last layer's forward and backward final
    states joined, i.e. `2 * H_out` features, where H_out = proj_size or hidden_size.
    """

    def __init__(self, cfg: ModelConfig, input_size: int, num_classes: int = 10) -> None:
        super().__init__()
        if not isinstance(cfg.hidden_size, int):
            raise ValueError("resolve model.hidden_size (auto) before building the model")
        check_fits(cfg, input_size, num_classes, MORE_MEMORY)  # the last guard; callers that can say more do first
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
        _, state = self.recurrent(x)
        return self._last_layer(state, x.shape[0])

    def _last_layer(self, state: Any, batch: int) -> torch.Tensor:
        """The recurrent layer's final state -> the last layer's h_n, (B, D*H_out)."""
        h_n = state[0] if self.cell == "lstm" else state  # (D*num_layers, B, H_out)
        # torch orders h_n layer-major: index = layer * D + direction.
        last = h_n.view(self.num_layers, self.directions, batch, self.h_out)[-1]  # (D, B, H_out)
        return last.transpose(0, 1).reshape(batch, self.directions * self.h_out)  # (B, D*H_out)

    def logits_by_step(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T, F) -> (B, T, num_classes): the logits after each step read; [:, -1] is forward(x) exactly.

        Unidirectional: one pass; the head reads the last layer's h_t at every step t (`output` holds
        them, projected with proj_size), which is what forward() would give on the first t+1 steps alone.
        Bidirectional: the backward direction starts at the last step, so step t's logits are those of
        the model run on the first t+1 steps alone (prefix runs: T passes).
        """
        if self.directions == 2:
            return torch.stack([self(x[:, :t]) for t in range(1, x.shape[1] + 1)], dim=1)  # (B, T, C)
        output, state = self.recurrent(x)  # output (B, T, H_out): the last layer's h_t for every t
        final = self.head(self._last_layer(state, x.shape[0]))  # (B, C): forward()'s own computation
        return torch.cat([self.head(output[:, :-1]), final.unsqueeze(1)], dim=1)  # (B, T, C)

    def recurrent(self, x: torch.Tensor):
        """The recurrent layer on x (B, T, F); under bf16 autocast truly in bf16, whatever model.impl.

        Autocast's own rule differs per implementation and device (on CUDA it runs cuDNN's fused RNN in
        fp16, with no loss scaling): so under bf16 the layer runs outside autocast on bf16 copies of its
        weights (gradients flow back to the fp32 weights) and a bf16 input, the same for fused, cell and
        scratch. fp16 autocast is left as torch has it (the GradScaler goes with it).
        """
        kind = x.device.type
        if not (torch.is_autocast_enabled(kind) and torch.get_autocast_dtype(kind) == torch.bfloat16):
            return self.rnn(x)
        with torch.autocast(kind, enabled=False):
            weights = {name: p.to(torch.bfloat16) for name, p in self.rnn.named_parameters()}
            return functional_call(self.rnn, weights, (x.to(torch.bfloat16),))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.final_state(x))  # (B, num_classes)


FITTED = ("cell", "hidden_size", "num_layers", "bidirectional", "proj_size", "bias")  # model keys the weights fit


def describe(cfg: ModelConfig) -> str:
    """`lstm 2x128 bidirectional`: the recurrent layer in a few words (and its proj_size or lack of bias)."""
    return (f"{cfg.cell} {cfg.num_layers}x{cfg.hidden_size}{' bidirectional' if cfg.bidirectional else ''}"
            f"{f' proj_size {cfg.proj_size}' if cfg.proj_size else ''}{'' if cfg.bias else ' without bias'}")


def load_weights(model: nn.Module, weights: dict[str, torch.Tensor], source: str) -> None:
    """Load a state_dict strictly; a mismatch names the parameters and shapes that differ."""
    _check_shapes({name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}, weights, source)
    model.load_state_dict(weights)


def check_weights_fit(weights: dict[str, torch.Tensor], saved: ModelConfig, cfg: ModelConfig, input_size: int,
                      num_classes: int, source: str) -> None:
    """Before a model is built: the weights of a checkpoint whose model is `saved` must fit the model `cfg`
    describes for this data; the mismatch says first what differs, then the parameters and shapes."""
    shapes = {name: cells.shape_of(dims) for name, dims in parameter_layout(cfg, input_size, num_classes).items()}
    _check_shapes(shapes, weights, source, (saved, cfg))


def _check_shapes(own: dict[str, tuple[int, ...]], weights: dict[str, torch.Tensor], source: str,
                  models: tuple[ModelConfig, ModelConfig] | None = None) -> None:
    """`models`: (the checkpoint's model config, the config's), to name the keys that differ."""
    missing = [name for name in own if name not in weights]
    unexpected = [name for name in weights if name not in own]
    resized = [f"{name} {tuple(weights[name].shape)} vs {tuple(own[name])}"
               for name in own if name in weights and tuple(weights[name].shape) != tuple(own[name])]
    if missing or unexpected or resized:
        parts = [f"{label}: {', '.join(names[:6])}{' ...' if len(names) > 6 else ''}" for label, names in
                 (("missing", missing), ("unexpected", unexpected), ("shape differs (saved vs model)", resized))
                 if names]
        raise SeqclfError(f"{source}: its weights do not fit the model the config describes{_differences(models)}"
                          f"\n  {'; '.join(parts)}")


def _differences(models: tuple[ModelConfig, ModelConfig] | None) -> str:
    """What differs between the checkpoint's model and the config's, in a line, and the --set that matches."""
    keys = "cell, hidden_size, num_layers, bidirectional, proj_size and bias"
    if models is None:
        return f"; the model's {keys} must match the checkpoint's"
    saved, own = models
    compared = f" (checkpoint: {describe(saved)}; config: {describe(own)})"
    fix = " ".join(f"--set model.{key}={str(getattr(saved, key)).lower()}" for key in FITTED
                   if getattr(saved, key) != getattr(own, key))
    if not fix:  # the same layer: the data's shape differs (its sequence view, image size or classes)
        return f"{compared}: the data differ (data.sequence, the image size or the number of classes)"
    return f"{compared}; to start from its weights the model must match: {fix}"


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def parameter_layout(cfg: ModelConfig, input_size: int, num_classes: int = 10) -> dict[str, Dims]:
    """Every parameter of the model `cfg` describes, named as in its state_dict, with symbolic shapes."""
    hidden = cfg.hidden_size
    if not isinstance(hidden, int):
        raise ValueError("resolve model.hidden_size (auto) before asking for the layout")
    layout = {f"rnn.{name}": dims for name, dims in cells.parameter_layout(
        cfg.cell, input_size, hidden, cfg.num_layers, cfg.bidirectional, cfg.proj_size, cfg.bias).items()}
    directions = 2 if cfg.bidirectional else 1
    h_out = ("proj", cfg.proj_size) if cfg.proj_size else ("hidden", hidden)
    joined = (f"{directions}*{h_out[0]}" if directions > 1 else h_out[0], directions * h_out[1])
    layout["head.weight"] = (("classes", num_classes), joined)  # the head reads the last layer's final h
    layout["head.bias"] = (("classes", num_classes),)
    return layout


def parameter_count(cfg: ModelConfig, input_size: int, num_classes: int = 10) -> int:
    """Parameters of the model `cfg` describes, from its layout (no model is built)."""
    return sum(math.prod(cells.shape_of(dims)) for dims in parameter_layout(cfg, input_size, num_classes).values())


SMALLER = "lower model.hidden_size or model.num_layers"  # where the config may change (train, shapes)
MORE_MEMORY = "it needs a machine with more free memory"  # where it may not (eval, --resume)


def check_fits(cfg: ModelConfig, input_size: int, num_classes: int, fix: str = SMALLER) -> None:
    """Refuse, before allocating, a model over the parameter limit or larger than the free memory."""
    check_parameters(f"a {cfg.cell} with hidden_size {cfg.hidden_size} and {cfg.num_layers} layer(s)",
                     parameter_count(cfg, input_size, num_classes), fix)


def resolve_hidden_size(cfg: Config, input_size: int, num_classes: int = 10) -> Config:
    """For `hidden_size: auto`, the largest hidden size whose model fits `param_budget`.

    The resolved config keeps both keys (hidden_size: 97, param_budget: N); a config that gives an
    integer hidden_size with a param_budget is checked against it.
    """
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
