"""Three interchangeable recurrent layers: torch's fused one, torch's cells stepped by hand, and
the gate equations written out from scratch.

All three take the same arguments, return what torch's fused layer returns and hold the same
parameters under the same names and shapes (`weight_ih_l0`, `bias_hh_l1_reverse`, ...), so a
checkpoint trained with one `model.impl` loads into any other with `load_state_dict(strict=True)`.

Shapes (D = 2 if bidirectional else 1, H_out = proj_size or hidden_size):
    x    (B, T, input_size) if batch_first else (T, B, input_size); (T, input_size) unbatched
    output (B, T, D*H_out) if batch_first else (T, B, D*H_out)
    h_n  (D*num_layers, B, H_out), index = layer * D + direction, like torch
    c_n  (D*num_layers, B, hidden_size), LSTM only: forward returns (output, (h_n, c_n))
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import _VF, Tensor, nn

GATES = {"rnn": 1, "lstm": 4, "gru": 3}  # rows of weight_ih per hidden unit: RNN h; LSTM i,f,g,o; GRU r,z,n
FUSED = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
Weights = tuple[Tensor, Tensor, "Tensor | None", "Tensor | None", "Tensor | None"]  # w_ih, w_hh, b_ih, b_hh, w_hr


Dims = tuple[tuple[str, int], ...]  # each dimension as (symbol, size), e.g. (("4*hidden", 512), ("input", 28))


def parameter_layout(cell: str, input_size: int, hidden_size: int, num_layers: int = 1, bidirectional: bool = False,
                     proj_size: int = 0, bias: bool = True) -> dict[str, Dims]:
    """Every parameter of the fused layer, in torch's registration order, with its symbolic shape.

    The one home of the layout: the layers below register exactly these, and the parameter count,
    the shapes inspector and the benchmark's FLOPs are read from it.
    """
    directions = 2 if bidirectional else 1
    gates = GATES[cell]
    rows = (_times(gates, "hidden"), gates * hidden_size)  # one block of rows per gate
    h_out = ("proj", proj_size) if proj_size else ("hidden", hidden_size)  # what h carries between steps
    joined = (_times(directions, h_out[0]), directions * h_out[1])  # a later layer reads both directions
    layout: dict[str, Dims] = {}
    for layer in range(num_layers):
        layer_input = ("input", input_size) if layer == 0 else joined
        for direction in range(directions):
            suffix = f"_l{layer}" + ("_reverse" if direction else "")
            layout[f"weight_ih{suffix}"] = (rows, layer_input)
            layout[f"weight_hh{suffix}"] = (rows, h_out)
            if bias:
                layout[f"bias_ih{suffix}"] = (rows,)
                layout[f"bias_hh{suffix}"] = (rows,)
            if proj_size:
                layout[f"weight_hr{suffix}"] = (("proj", proj_size), ("hidden", hidden_size))
    return layout


def shape_of(dims: Dims) -> tuple[int, ...]:
    return tuple(size for _, size in dims)


def formula_of(dims: Dims) -> str:
    """(("4*hidden", 512), ("input", 28)) -> "(4*hidden, input)"."""
    return "(" + ", ".join(symbol for symbol, _ in dims) + ("," if len(dims) == 1 else "") + ")"


def _times(factor: int, symbol: str) -> str:
    return symbol if factor == 1 else f"{factor}*{symbol}"


def _check_options(cell: str, hidden_size: int, num_layers: int, dropout: float, proj_size: int,
                   nonlinearity: str) -> None:
    """Reject what torch's fused layers reject, with the same kind of error (ValueError)."""
    if cell not in GATES:
        raise ValueError(f"cell must be one of: {', '.join(GATES)}; got {cell!r}")
    if hidden_size <= 0 or num_layers <= 0:
        raise ValueError(f"hidden_size and num_layers must be positive, got {hidden_size} and {num_layers}")
    if not 0.0 <= dropout <= 1.0:
        raise ValueError(f"dropout must be in [0, 1], got {dropout}")
    if proj_size < 0 or (proj_size > 0 and (cell != "lstm" or proj_size >= hidden_size)):
        raise ValueError(f"proj_size must be 0, or an LSTM's 0 < proj_size < hidden_size; got {proj_size} "
                         f"for cell={cell}, hidden_size={hidden_size}")
    if nonlinearity not in ("tanh", "relu") or (nonlinearity != "tanh" and cell != "rnn"):
        raise ValueError(f"nonlinearity must be tanh, or relu for cell=rnn only; got {nonlinearity!r} for cell={cell}")


def fused_recurrent(cell: str, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                    batch_first: bool = True, dropout: float = 0.0, bidirectional: bool = False,
                    proj_size: int = 0, nonlinearity: str = "tanh") -> nn.Module:
    """torch's own layer (nn.RNN, nn.LSTM or nn.GRU): one cuDNN/ATen call for the whole sequence."""
    _check_options(cell, hidden_size, num_layers, dropout, proj_size, nonlinearity)
    options: dict = dict(num_layers=num_layers, bias=bias, batch_first=batch_first, bidirectional=bidirectional)
    if num_layers > 1:  # torch warns about dropout on a single layer, where it does nothing
        options["dropout"] = dropout
    if cell == "lstm":
        options["proj_size"] = proj_size
    if cell == "rnn":
        options["nonlinearity"] = nonlinearity
    return FUSED[cell](input_size, hidden_size, **options)


class _Recurrent(nn.Module):
    """The fused layer's parameters and its loop over layers and directions.

    Subclasses say how one direction of one layer runs over the sequence (`run_direction`).
    """

    def __init__(self, cell: str, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = True, dropout: float = 0.0, bidirectional: bool = False,
                 proj_size: int = 0, nonlinearity: str = "tanh") -> None:
        super().__init__()
        _check_options(cell, hidden_size, num_layers, dropout, proj_size, nonlinearity)
        self.cell, self.input_size, self.hidden_size, self.num_layers = cell, input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout, self.bidirectional = bias, batch_first, float(dropout), bidirectional
        self.proj_size, self.nonlinearity = proj_size, nonlinearity
        self.directions = 2 if bidirectional else 1
        # Same names, shapes and registration order as torch's RNNBase, so state_dicts match key for key.
        layout = parameter_layout(cell, input_size, hidden_size, num_layers, bidirectional, proj_size, bias)
        for name, dims in layout.items():
            self.register_parameter(name, nn.Parameter(torch.empty(shape_of(dims))))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torch's initialisation (same order, same draws): every parameter ~ U(-1/sqrt(H), 1/sqrt(H))."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)

    def extra_repr(self) -> str:
        text = f"{self.cell}, {self.input_size}, {self.hidden_size}"
        for name, default in [("proj_size", 0), ("num_layers", 1), ("bias", True), ("batch_first", False),
                              ("dropout", 0.0), ("bidirectional", False), ("nonlinearity", "tanh")]:
            if getattr(self, name) != default:
                text += f", {name}={getattr(self, name)}"
        return text

    def weights(self, layer: int, direction: int) -> Weights:
        """(w_ih, w_hh, b_ih, b_hh, w_hr) of one layer and direction; absent ones are None."""
        suffix = f"_l{layer}" + ("_reverse" if direction else "")
        return tuple(getattr(self, name + suffix, None)  # type: ignore[return-value]
                     for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr"))

    def run_direction(self, x: Tensor, h: Tensor, c: Tensor | None, weights: Weights
                      ) -> tuple[Tensor, Tensor, Tensor | None]:
        """x (T, B, I), h (B, H_out), c (B, H) or None -> (outputs (T, B, H_out), h_T, c_T)."""
        raise NotImplementedError

    def forward(self, x: Tensor, hx: Tensor | tuple[Tensor, Tensor] | None = None):
        lstm, directions = self.cell == "lstm", self.directions
        h_out = self.proj_size or self.hidden_size
        if x.dim() not in (2, 3) or x.shape[-1] != self.input_size:
            raise ValueError(f"expected input (B, T, {self.input_size}), (T, B, {self.input_size}) or "
                             f"(T, {self.input_size}); got {tuple(x.shape)}")
        unbatched = x.dim() == 2
        if unbatched:
            x = x.unsqueeze(1)  # (T, 1, I); torch ignores batch_first for unbatched input
        elif self.batch_first:
            x = x.transpose(0, 1)  # (T, B, I): time-major, so x[t] is one step
        batch = x.shape[1]
        if hx is None:
            h0 = x.new_zeros(directions * self.num_layers, batch, h_out)
            c0 = x.new_zeros(directions * self.num_layers, batch, self.hidden_size) if lstm else None
        else:
            h0, c0 = hx if lstm else (hx, None)  # type: ignore[misc]
            if unbatched:
                h0, c0 = h0.unsqueeze(1), (c0.unsqueeze(1) if c0 is not None else None)
            self._check_state(h0, batch, h_out, "h_0")
            if lstm:
                self._check_state(c0, batch, self.hidden_size, "c_0")

        h_n, c_n = [], []
        layer_input = x  # (T, B, I) for layer 0, then (T, B, D*H_out)
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(directions):
                k = layer * directions + direction
                # The backward direction reads the sequence reversed; flip its outputs back to time order.
                seq = layer_input.flip(0) if direction else layer_input
                out, h, c = self.run_direction(seq, h0[k], c0[k] if lstm else None, self.weights(layer, direction))
                outputs.append(out.flip(0) if direction else out)  # (T, B, H_out)
                h_n.append(h)
                c_n.append(c)
            layer_input = torch.cat(outputs, dim=2) if directions == 2 else outputs[0]  # (T, B, D*H_out)
            if self.dropout and self.training and layer < self.num_layers - 1:  # between layers, as torch
                layer_input = F.dropout(layer_input, self.dropout, training=True)

        output, h_last = layer_input, torch.stack(h_n)  # (T, B, D*H_out), (D*num_layers, B, H_out)
        c_last = torch.stack(c_n) if lstm else None  # (D*num_layers, B, H)
        if unbatched:
            output, h_last = output.squeeze(1), h_last.squeeze(1)
            c_last = c_last.squeeze(1) if c_last is not None else None
        elif self.batch_first:
            output = output.transpose(0, 1)  # (B, T, D*H_out)
        return (output, (h_last, c_last)) if lstm else (output, h_last)

    def _check_state(self, state: Tensor | None, batch: int, size: int, name: str) -> None:
        expected = (self.directions * self.num_layers, batch, size)
        if state is None or tuple(state.shape) != expected:
            got = None if state is None else tuple(state.shape)
            raise ValueError(f"expected {name} of shape {expected}, got {got}")


class CellRecurrent(_Recurrent):
    """torch's cell functions (the kernels behind nn.LSTMCell & co.) stepped in a Python loop."""

    def run_direction(self, x: Tensor, h: Tensor, c: Tensor | None, weights: Weights
                      ) -> tuple[Tensor, Tensor, Tensor | None]:
        w_ih, w_hh, b_ih, b_hh, w_hr = weights
        outputs = []
        if self.cell == "lstm":
            # lstm_cell has no projection and wants w_hh (4H, H): with proj_size P, pad w_hh and the
            # projected h with zero columns (W_hh h = [W_hh 0] [h; 0]) and apply W_hr ourselves.
            pad = self.hidden_size - w_hh.shape[1]
            w_hh = F.pad(w_hh, (0, pad))  # (4H, H)
            for x_t in x:  # x_t (B, I)
                h, c = _VF.lstm_cell(x_t, (F.pad(h, (0, pad)), c), w_ih, w_hh, b_ih, b_hh)  # (B, H), (B, H)
                if w_hr is not None:
                    h = h @ w_hr.T  # (B, P)
                outputs.append(h)
            return torch.stack(outputs), h, c
        step = {"gru": _VF.gru_cell, "rnn": getattr(_VF, f"rnn_{self.nonlinearity}_cell")}[self.cell]
        for x_t in x:
            h = step(x_t, h, w_ih, w_hh, b_ih, b_hh)  # (B, H)
            outputs.append(h)
        return torch.stack(outputs), h, None


# ---------------------------------------------------------------- from scratch
# Each step gets `x_gates` = x_t @ W_ih^T + b_ih, computed for all time steps in one matmul
# before the loop (the input does not depend on h), and adds the recurrent part itself.


def lstm_step(x_gates: Tensor, h: Tensor, c: Tensor, w_hh: Tensor, b_hh: Tensor | float,
              w_hr: Tensor | None) -> tuple[Tensor, Tensor]:
    """x_gates (B, 4H), h (B, H_out), c (B, H) -> h' (B, H_out), c' (B, H)."""
    gates = x_gates + h @ w_hh.T + b_hh  # (B, 4H), torch's row order i, f, g, o
    i, f, g, o = gates.chunk(4, dim=1)  # each (B, H)
    i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
    c = f * c + i * g  # (B, H): forget some of the old cell, write some of the candidate
    h = o * torch.tanh(c)  # (B, H)
    if w_hr is not None:
        h = h @ w_hr.T  # (B, P): the projection
    return h, c


def gru_step(x_gates: Tensor, h: Tensor, w_hh: Tensor, b_hh: Tensor | float) -> Tensor:
    """x_gates (B, 3H), h (B, H) -> h' (B, H)."""
    h_gates = h @ w_hh.T + b_hh  # (B, 3H), torch's row order r, z, n
    x_r, x_z, x_n = x_gates.chunk(3, dim=1)  # each (B, H)
    h_r, h_z, h_n = h_gates.chunk(3, dim=1)  # each (B, H)
    r = torch.sigmoid(x_r + h_r)  # reset gate
    z = torch.sigmoid(x_z + h_z)  # update gate
    n = torch.tanh(x_n + r * h_n)  # candidate: r scales the recurrent part, bias b_hn included
    return (1 - z) * n + z * h  # (B, H)


def rnn_step(x_gates: Tensor, h: Tensor, w_hh: Tensor, b_hh: Tensor | float, nonlinearity: str) -> Tensor:
    """x_gates (B, H), h (B, H) -> h' (B, H)."""
    pre = x_gates + h @ w_hh.T + b_hh  # (B, H)
    return torch.tanh(pre) if nonlinearity == "tanh" else torch.relu(pre)


class ScratchRecurrent(_Recurrent):
    """The gate equations in plain tensor ops: no torch RNN module, cell or cell function."""

    def run_direction(self, x: Tensor, h: Tensor, c: Tensor | None, weights: Weights
                      ) -> tuple[Tensor, Tensor, Tensor | None]:
        w_ih, w_hh, b_ih, b_hh, w_hr = weights
        b_ih_or_0 = b_ih if b_ih is not None else 0.0  # bias=False: the same equations without b
        b_hh_or_0 = b_hh if b_hh is not None else 0.0
        x_gates = x @ w_ih.T + b_ih_or_0  # (T, B, G*H): the input's share of every gate, all steps at once
        outputs = []
        for x_t in x_gates:  # (B, G*H)
            if self.cell == "lstm":
                h, c = lstm_step(x_t, h, c, w_hh, b_hh_or_0, w_hr)  # type: ignore[arg-type]
            elif self.cell == "gru":
                h = gru_step(x_t, h, w_hh, b_hh_or_0)
            else:
                h = rnn_step(x_t, h, w_hh, b_hh_or_0, self.nonlinearity)
            outputs.append(h)
        return torch.stack(outputs), h, c  # (T, B, H_out), (B, H_out), (B, H) or None


IMPLEMENTATIONS = {"fused": fused_recurrent, "cell": CellRecurrent, "scratch": ScratchRecurrent}
