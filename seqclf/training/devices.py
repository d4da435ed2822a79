"""What differs between CPU, CUDA and Apple's MPS, decided here and nowhere else.

- float64: MPS has none. `dtype_policy` says where the epoch's metric sums live and in which dtype
  each step's values are taken (see docs/devices.md for what is exact where).
- clocks: `synchronize` waits for the device's queued work (CUDA and MPS run asynchronously).
- precision switches: `configure` sets fp32 to IEEE or TF32 (train.tf32) and deterministic
  algorithms (train.deterministic) before a run computes anything.
- fp16 runs on CUDA only (`has_fp16`); a CUDA fp16 run may continue in bf16/fp32 elsewhere.
- out of memory: CUDA raises torch.OutOfMemoryError, MPS a plain RuntimeError (`is_out_of_memory`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from seqclf.config import TrainConfig
from seqclf.errors import TrainingError, first_line

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


def out_of_memory(exc: BaseException, device: torch.device, batch_size: int, doing: str, config: str,
                  init_from: str | None = None) -> TrainingError:
    """The message for running out of device memory (exit 1): not bad input, a batch to try instead
    (a new run: the batch size of a run cannot change on resume; `init_from` starts it from a run's weights)."""
    first = first_line(exc)
    return TrainingError(
        f"out of memory on {device} while {doing} with train.batch_size={batch_size} ({first[:200]}). Free the "
        f"device's memory (other processes on it) or train with half the batch: seqclf train --config {config} "
        f"--set train.batch_size={max(1, batch_size // 2)}{f' --init-from {init_from}' if init_from else ''}")
