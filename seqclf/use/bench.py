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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from seqclf.config import Config
from seqclf.console import Output
from seqclf.data.datasets import Data, Split
from seqclf.data.files import load_arrays
from seqclf.data.views import to_sequences
from seqclf.model.classifier import SequenceClassifier
from seqclf.store.runlog import RunLog
from seqclf.training.devices import autocast
from seqclf.training.optim import build_optimizer
from seqclf.training.prepare import prepare
from seqclf.training.scoring import score
from seqclf.training.signals import GracefulStop
from seqclf.training.start import new_run
from seqclf.training.trainer import Run, Trainer
from seqclf.use.flops import DTYPES, matmul_gflops, timed, train_flops

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


def _measure(cfg: Config, data: Data, device: torch.device, baseline: bool, k: int,
             rounds: int) -> tuple[dict[str, float], float]:
    """The median rate of each pipeline (examples/s), of eval and of each matmul library (GFLOP/s)
    over `rounds` interleaved rounds of `k` steps, and the seconds one epoch's checkpoint writes take."""
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
            rates[name].append(timed(device, work))
        rates["eval"].append(timed(device, lambda: score(model, data.test, data.num_classes, precision)["n"]))
        for library, rate in matmul_gflops(device, dtype=DTYPES[cfg.train.precision]).items():
            rates.setdefault(library, []).append(rate)
    return {name: statistics.median(values) for name, values in rates.items()}, seconds_per_save


def bench(cfg: Config, baseline: bool = False, steps: int = 100, rounds: int = 5) -> dict[str, Any]:
    """Throughputs (examples/s), FLOP rates and their ratios for `cfg`'s model on `cfg`'s data.

    `steps` training steps are timed per pipeline, split over `rounds` interleaved rounds;
    each round also scores the test split once and times the matmul.
    """
    load_at_start = os.getloadavg()[0]
    ready = prepare(cfg, splits=("train", "test"))
    cfg, data, device, threads = ready.cfg, ready.data, ready.device, ready.threads
    k = max(1, steps // rounds)
    median, seconds_per_save = _measure(cfg, data, device, baseline, k, rounds)
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
