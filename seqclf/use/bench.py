"""`seqclf bench`: how fast training and evaluation run, and how close to the machine's limit.

Everything is measured in one process, after a warm-up, in interleaved rounds (one chunk of
each pipeline per round) and reported as medians over the rounds, so that other processes
sharing the cores slow every pipeline alike and the ratios hold:
- the real training loop: `Trainer.run_steps` (the steps `seqclf train` runs) on the
  configured data, with its metric sums, progress handling and finite checks, plus the
  per-epoch checkpoint writes amortized over an epoch;
- a bare loop: forward, backward and optimizer step on random tensors of the same shape,
  with the same model and optimizer (the most the network alone could do);
- optionally (`baseline=True`) the conventional pipeline: a torchvision-style dataset that
  turns each image into a PIL image, then ToTensor and Normalize, a DataLoader, the same
  model, batch size and optimizer;
- evaluation: `seqclf.training.scoring.score` over the test split;
- square matmuls in the training's precision (torch.mm, and oneDNN's on CPU), sized for the device:
  the machine's practical peak, to which the
  achieved rate is compared.
"""

from __future__ import annotations

import math
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from seqclf.config import Config, ModelConfig
from seqclf.console import Output
from seqclf.data.datasets import Data, Split
from seqclf.data.files import load_arrays
from seqclf.data.views import to_sequences
from seqclf.model.cells import shape_of
from seqclf.model.classifier import SequenceClassifier, parameter_layout
from seqclf.store.runlog import RunLog
from seqclf.training.devices import autocast, synchronize
from seqclf.training.optim import build_optimizer
from seqclf.training.prepare import prepare
from seqclf.training.scoring import score
from seqclf.training.signals import GracefulStop
from seqclf.training.start import new_run
from seqclf.training.trainer import Run, Trainer

# square matmul timed for the peak, per device type: big enough for full-speed kernels (1024 on a CPU;
# a large GPU needs thousands of rows, or the time is the launch's and `efficiency` passes 100%)
MATMUL_SIZES = {"cpu": 1024, "mps": 4096, "cuda": 8192}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}  # train.precision's matmul
MATMUL_REPS = 5  # per round; the round's best, then the median over rounds


# ---------------------------------------------------------------- analytic FLOPs


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


# ---------------------------------------------------------------- timing helpers


def _timed(device: torch.device, work: Callable[[], int]) -> float:
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


# ---------------------------------------------------------------- the pipelines


def _real_loop(run: Run, k: int) -> Callable[[], int]:
    """k steps of the real loop, starting a new epoch (new order, zeroed sums) whenever one ends."""
    state, n_train, batch = run.state, len(run.data.train), run.cfg.train.batch_size
    steps_per_epoch = math.ceil(n_train / batch)
    out = Output(quiet=True)  # what a non-terminal run gets: no bar, no per-step output
    trainer = Trainer(run, out, GracefulStop())  # its stop is never entered: no signal handlers, never asks to stop

    def work() -> int:
        done, examples = 0, 0
        while done < k:
            if state.cursor.order is None or state.cursor.step >= steps_per_epoch:
                state.begin_epoch(n_train)
            first = state.cursor.step
            last = min(steps_per_epoch, first + k - done)
            with out.progress(steps_per_epoch, "bench") as bar:
                trainer.run_steps(bar, last)
            done += last - first
            examples += min(last * batch, n_train) - first * batch
        return examples

    return work


def _bare_loop(run: Run, k: int) -> Callable[[], int]:
    """k plain steps on one random batch of the same shape, with the run's model and optimizer."""
    cfg, model, data = run.cfg, run.state.model, run.data
    batch = cfg.train.batch_size
    x = torch.randn(batch, data.seq_len, data.input_size, device=run.device)  # (B, T, F)
    y = torch.randint(data.num_classes, (batch,), device=run.device)  # (B,)

    def work() -> int:
        for _ in range(k):
            with autocast(cfg.train, run.device):
                loss = F.cross_entropy(model(x).float(), y)
            run.state.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            run.state.optimizer.step()
        return k * batch

    return work


class TorchvisionStyle(torch.utils.data.Dataset):
    """What torchvision.datasets.MNIST does per item: a uint8 image -> PIL image -> transform."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: Any) -> None:
        self.images, self.labels, self.transform = images, labels, transform  # (N, H, W) uint8, (N,)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        image = Image.fromarray(self.images[index].numpy(), mode="L")
        return self.transform(image), int(self.labels[index])  # (1, H, W) float32, class


def _conventional_loop(cfg: Config, data: Data, device: torch.device, k: int) -> Callable[[], int]:
    """k steps of the conventional recipe: DataLoader over per-image transforms, same model and optimizer."""
    from torchvision import transforms

    arrays = load_arrays(cfg.data)
    n = len(data.train)
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((data.mean,), (data.std,))])
    dataset = TorchvisionStyle(arrays.train_images[:n], arrays.train_labels[:n], transform)
    loader = torch.utils.data.DataLoader(dataset, batch_size=cfg.train.batch_size, shuffle=True, num_workers=0,
                                         generator=torch.Generator().manual_seed(cfg.seed))
    model = SequenceClassifier(cfg.model, data.input_size, data.num_classes).to(device)
    optimizer = build_optimizer(cfg.train, model.parameters())
    model.train()
    batches = iter(loader)

    def work() -> int:
        nonlocal batches
        examples = 0
        for _ in range(k):
            try:
                images, labels = next(batches)
            except StopIteration:
                batches = iter(loader)
                images, labels = next(batches)
            x = to_sequences(images.squeeze(1), cfg.data.sequence, data.permutation).to(device)  # (B, T, F)
            y = labels.to(device)
            with autocast(cfg.train, device):
                loss = F.cross_entropy(model(x).float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            examples += len(y)
        return examples

    return work


def _checkpoint_seconds(run: Run) -> float:
    """What the loop writes at an epoch's end (last.pt, best.pt, metrics.jsonl): the median of 3."""
    times = []
    for _ in range(3):
        start = time.perf_counter()
        run.log.save_best(run.payload(with_state=False))
        run.log.save_last(run.payload(with_state=True))
        run.log.epoch(run.state.history)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# ---------------------------------------------------------------- the benchmark


def ratio_text(speedup: float) -> str:
    """`2.0x faster`, or `1.7x slower` when the ratio is under 1 (never `0.6x faster`)."""
    return f"{speedup:.1f}x faster" if speedup >= 1 else f"{1 / speedup:.1f}x slower"


def contention(result: dict[str, Any]) -> str | None:
    """A warning when the load average exceeded the cores at the start or end of a bench, else None."""
    load = max(result["load_average_start"], result["load_average"])
    if load <= result["cores"]:
        return None
    return (f"the load average was {result['load_average_start']:.1f} at the start and {result['load_average']:.1f} "
            f"at the end, over this machine's {result['cores']} cores: other processes competed for the CPU, so "
            f"these figures are low and vary; rerun on an idle machine")


def bench(cfg: Config, baseline: bool = False, steps: int = 100, rounds: int = 5) -> dict[str, Any]:
    """Throughputs (examples/s), FLOP rates and their ratios for `cfg`'s model on `cfg`'s data.

    `steps` training steps are timed per pipeline, split over `rounds` interleaved rounds;
    each round also scores the test split once and times the matmul.
    """
    load_at_start = os.getloadavg()[0]
    ready = prepare(cfg, splits=("train", "test"))
    cfg, data, device, threads = ready.cfg, ready.data, ready.device, ready.threads
    k = max(1, steps // rounds)
    with tempfile.TemporaryDirectory(prefix="seqclf-bench-") as run_dir:
        run = new_run(cfg, RunLog(Path(run_dir), cfg), data, device)
        run.state.model.train()
        pipelines = {"train": _real_loop(run, k), "bare": _bare_loop(run, k)}
        if baseline:
            pipelines["baseline"] = _conventional_loop(cfg, data, device, k)
        seconds_per_save = _checkpoint_seconds(run)
    precision = autocast(cfg.train, device)
    model = run.state.model
    score(model, Split(data.test.x[:256], data.test.y[:256]), data.num_classes, precision)  # warm-up
    rates: dict[str, list[float]] = {name: [] for name in [*pipelines, "eval"]}
    for work in pipelines.values():
        work()  # warm-up: kernels chosen, buffers and optimizer state allocated
    for _ in range(rounds):
        for name, work in pipelines.items():
            rates[name].append(_timed(device, work))
        rates["eval"].append(_timed(device, lambda: score(model, data.test, data.num_classes, precision)["n"]))
        for library, rate in matmul_gflops(device, dtype=DTYPES[cfg.train.precision]).items():
            rates.setdefault(library, []).append(rate)
    median = {name: statistics.median(values) for name, values in rates.items()}
    matmul = {library: median[library] for library in ("torch.mm", "onednn") if library in median}
    peak = max(matmul.values())

    # an epoch of the real loop = its steps + the checkpoint writes at its end (validation is scoring)
    n_train = len(data.train)
    train_rate = n_train / (n_train / median["train"] + seconds_per_save)
    flops = train_flops(cfg.model, data.input_size, data.seq_len, data.num_classes)
    achieved = train_rate * flops / 1e9
    m = cfg.model
    result: dict[str, Any] = {
        "model": f"{m.cell} {m.num_layers}x{m.hidden_size}{' bidirectional' if m.bidirectional else ''}"
                 f"{f' proj {m.proj_size}' if m.proj_size else ''}",
        "batch_size": cfg.train.batch_size, "device": str(device), "threads": threads,
        "precision": cfg.train.precision, "steps": k * rounds, "rounds": rounds,
        "train_examples_per_s": train_rate,
        "eval_examples_per_s": median["eval"],
        "eval_to_train": median["eval"] / train_rate,
        "flops_per_example": flops,
        "achieved_gflops": achieved,
        "peak_gflops": peak,  # the better matmul of matmul_gflops, in train.precision
        "matmul_gflops": matmul,
        "efficiency": achieved / peak,
        "bare_examples_per_s": median["bare"],
        "loop_efficiency": train_rate / median["bare"],
        "checkpoint_seconds": seconds_per_save,
        # runnable processes over the last minute, before and after: more than the cores means contention
        "load_average_start": load_at_start, "load_average": os.getloadavg()[0], "cores": os.cpu_count() or 1,
    }
    if baseline:
        result["baseline_train_examples_per_s"] = median["baseline"]
        result["speedup"] = train_rate / median["baseline"]
    return result
