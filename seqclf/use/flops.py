"""How much work a model's step is (analytic FLOPs from the parameter layout) and how fast this machine
multiplies matrices (its practical peak): what `seqclf bench` compares its measured rate against."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from seqclf.config import ModelConfig
from seqclf.model.cells import shape_of
from seqclf.model.classifier import parameter_layout
from seqclf.training.devices import synchronize

# square matmul timed for the peak, per device type: big enough for full-speed kernels (1024 on a CPU;
# a large GPU needs thousands of rows, or the time is the launch's and `efficiency` passes 100%)
MATMUL_SIZES = {"cpu": 1024, "mps": 4096, "cuda": 8192}


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}  # train.precision's matmul


MATMUL_REPS = 5  # per round; the round's best, then the median over rounds


def forward_flops(cfg: ModelConfig, input_size: int, seq_len: int, num_classes: int = 10) -> int:
    """Multiply-add FLOPs (2 per multiply-accumulate) of one example's forward pass.

    Every step multiplies each recurrent weight matrix once: per layer and direction the G gate
    blocks of H rows by the layer's input and the previous h, `T * 2 * G * H * (I_l + H_out)`
    (G = 4 LSTM, 3 GRU, 1 RNN; `I_l` the view's features for layer 0 and `D * H_out` after,
    H_out = proj_size or hidden_size), and with proj_size P the projection `T * 2 * H * P`: in
    all, T * 2 * (the number of recurrent weights). The head adds `2 * D * H_out * C`. Gate
    nonlinearities and biases are elementwise (O(G*H) per step, under 1% for H >= 32), not counted.
    """
    layout = parameter_layout(cfg, input_size, num_classes)
    recurrent = sum(math.prod(shape_of(dims)) for name, dims in layout.items()
                    if name.startswith("rnn.weight_"))  # weight_ih, weight_hh, weight_hr of every layer
    return seq_len * 2 * recurrent + 2 * math.prod(shape_of(layout["head.weight"]))


def train_flops(cfg: ModelConfig, input_size: int, seq_len: int, num_classes: int = 10) -> int:
    """Training FLOPs of one example: forward plus backward, which costs about twice the forward
    (a gradient for the inputs and one for the weights of every matmul): 3x forward."""
    return 3 * forward_flops(cfg, input_size, seq_len, num_classes)


def timed(device: torch.device, work: Callable[[], int]) -> float:
    """Examples per second of `work()`, which returns how many examples it processed."""
    synchronize(device)
    start = time.perf_counter()
    examples = work()
    synchronize(device)
    return examples / max(time.perf_counter() - start, 1e-9)


def matmul_gflops(device: torch.device, size: int | None = None, reps: int = MATMUL_REPS,
                  dtype: torch.dtype = torch.float32) -> dict[str, float]:
    """GFLOP/s of the best of `reps` square `dtype` matmuls (2 * size^3 FLOPs each), per library.

    `size` defaults to the device's (MATMUL_SIZES); fp32 on CUDA is IEEE or TF32 as train.tf32 set it.

    `torch.mm` runs MKL's sgemm on CPU (cuBLAS on CUDA). On CPU also oneDNN's matmul, the library
    of torch's CPU LSTM kernels: on some CPUs (AMD's, here) MKL takes a slower code path and
    reaches about half of what oneDNN does, so the peak is the better of the two.
    """
    size = size or MATMUL_SIZES.get(device.type, MATMUL_SIZES["cpu"])
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    c = torch.empty(size, size, device=device, dtype=dtype)
    kernels = {"torch.mm": lambda: torch.mm(a, b, out=c)}
    if device.type == "cpu" and torch.backends.mkldnn.is_available():
        a_onednn, b_onednn = a.to_mkldnn(), b.to_mkldnn()
        kernels["onednn"] = lambda: F.linear(a_onednn, b_onednn)  # a @ b.T: the same FLOPs
    rates = {}
    for name, kernel in kernels.items():
        kernel()  # warm-up: kernels chosen, memory touched
        best = math.inf
        for _ in range(reps):
            synchronize(device)
            start = time.perf_counter()
            kernel()
            synchronize(device)
            best = min(best, time.perf_counter() - start)
        rates[name] = 2 * size ** 3 / best / 1e9
    return rates
