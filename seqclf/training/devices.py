"""What differs between CPU, CUDA and Apple's MPS, decided here and nowhere else.

- float64: MPS has none. `dtype_policy` says where the epoch's metric sums live and in which dtype
  each step's values are taken (see docs/devices.md for what is exact where).
- clocks: `synchronize` waits for the device's queued work (CUDA and MPS run asynchronously).
- precision switches: `configure` sets fp32 to IEEE or TF32 (train.tf32) and deterministic
  algorithms (train.deterministic) before a run computes anything.
- fp16 runs on CUDA only (`has_fp16`); a CUDA fp16 run may continue in bf16/fp32 elsewhere.
- out of memory: CUDA raises torch.OutOfMemoryError, MPS a plain RuntimeError (`is_out_of_memory`).
- which device: `resolve_device` turns train.device into a torch device that exists here; `autocast` is
  train.precision's context; `configure_threads` gives each process its share of the CPU cores.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any

import torch

from seqclf.config import TrainConfig
from seqclf.config.limits import default_threads
from seqclf.errors import SeqclfError

NO_FLOAT64 = ("mps",)  # device types without float64 tensors
CUBLAS_WORKSPACE = ":4096:8"  # what torch's reproducibility notes ask of cuBLAS for deterministic results


@dataclass(frozen=True)
class DtypePolicy:
    """How a device keeps exact running sums.

    float64=True (CPU, CUDA): the sums are float64 tensors on the device, added to every step with no
    host sync. float64=False (MPS): each step's values are kept as float32 on the device and added up
    on the host, in Python floats (IEEE double), whenever the loop syncs anyway (`settle`).
    """

    float64: bool

    def sums_device(self, device: torch.device) -> torch.device:
        """Where the float64 sums live: the device itself, or the host when it has no float64."""
        return device if self.float64 else torch.device("cpu")

    @property
    def step_dtype(self) -> torch.dtype:
        """The dtype of one step's values on the device (a loss sum, a gradient norm)."""
        return torch.float64 if self.float64 else torch.float32


def dtype_policy(device_type: str) -> DtypePolicy:
    return DtypePolicy(float64=device_type not in NO_FLOAT64)


def synchronize(device: torch.device) -> None:
    """Wait until the device has run everything queued (a clock read before would time the queueing)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def has_fp16(device_type: str) -> bool:
    """train.precision=fp16 (autocast with a GradScaler) runs on CUDA only."""
    return device_type == "cuda"


def precision_change_allowed(saved: str, new: str, device_type: str) -> bool:
    """On resume train.precision stays, except that a CUDA fp16 run may continue in bf16 or fp32 on a
    device that has no fp16 (its GradScaler state is then dropped: bf16 and fp32 need none)."""
    return saved == new or (saved == "fp16" and new in ("bf16", "fp32") and not has_fp16(device_type))


def configure(t: TrainConfig) -> None:
    """torch's process-wide switches for a run, set before it computes anything.

    fp32 on CUDA is IEEE fp32 unless train.tf32 (torch's default for cuDNN RNNs is TF32); set through
    the two switches that keep torch's older and newer precision flags in agreement (mixing them makes
    torch raise when either is read). With
    train.deterministic: deterministic algorithms everywhere, cuDNN without autotuning, and the cuBLAS
    workspace torch's reproducibility notes require (read when cuBLAS starts: set before any CUDA work;
    an existing CUBLAS_WORKSPACE_CONFIG is kept). Without it nothing is switched back: a process that
    asked for determinism once keeps it.
    """
    torch.set_float32_matmul_precision("high" if t.tf32 else "highest")  # high: TF32 matmuls
    torch.backends.cudnn.allow_tf32 = t.tf32  # cuDNN's RNNs (and convolutions)
    if t.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA's torch.OutOfMemoryError, or MPS's RuntimeError that says the same."""
    return isinstance(exc, torch.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "MPS backend out of memory" in str(exc))


def resolve_device(name: str, precision: str = "fp32") -> torch.device:
    """The torch device `train.device` names, checked to exist (and to run `train.precision`)."""
    device = _device(name)
    if precision == "fp16" and device.type != "cuda":
        raise SeqclfError(f"train.precision: fp16 runs on CUDA only, and train.device={name} resolved to "
                          f"{device}; use train.precision=bf16 or fp32")
    return device


def _device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps"):
        raise SeqclfError(f"train.device: {name!r} is not a device seqclf runs on; use auto, cpu, cuda, cuda:N or mps")
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (device.index or 0) >= count:
            raise SeqclfError(f"train.device: {name!r} is not available here ({count} CUDA device(s) found); "
                              f"use train.device=cpu or auto")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise SeqclfError("train.device: 'mps' is not available here; use train.device=cpu or auto")
    return device


def configure_threads(num_threads: int, share: int = 1) -> int:
    threads = num_threads or default_threads(share)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


def autocast(t: TrainConfig, device: torch.device) -> Any:
    """The autocast context for train.precision (a no-op for fp32)."""
    if t.precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if t.precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)
