"""The trainer: a run's epochs as plain PyTorch, written out; `Trainer.epoch` reads top to bottom.

start.py starts or resumes a run and hands it to `Trainer(run, out, stop).fit()`; `seqclf bench`
times `Trainer.run_steps`, the same step code training runs. The ways a run ends early (a signal, a
non-finite loss, out of memory, a lost rank) are exception types in failures.py.
"""

from __future__ import annotations

import contextlib
import math
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, NoReturn

import torch
import torch.nn.functional as F
from torch import nn

from seqclf.config import Config
from seqclf.console import Output
from seqclf.data.datasets import Data, Split
from seqclf.errors import Interrupted, Pruned
from seqclf.model.classifier import count_parameters
from seqclf.store import checkpoint
from seqclf.store.checkpoint import DataMeta
from seqclf.store.rundir import RunDir
from seqclf.store.runlog import RunLog
from seqclf.training import distributed, rng
from seqclf.training.devices import autocast, is_out_of_memory
from seqclf.training.failures import LostContact, NonFinite, OutOfMemory, RunInterrupted, stopped_early
from seqclf.training.optim import PER_BATCH_SCHEDULERS
from seqclf.training.scoring import score
from seqclf.training.signals import GracefulStop
from seqclf.training.state import TrainingState

Callback = Callable[[dict[str, Any]], None]  # called with each finished epoch's metrics row; may raise Pruned


@dataclass
class Run:
    """A run in progress: its config and data, its state, its record on disk, its place among ranks."""

    cfg: Config
    data: Data
    state: TrainingState
    log: RunLog
    device: torch.device
    dist: distributed.Context = field(default_factory=distributed.Context)  # torchrun's rank and world
    ddp: nn.Module | None = None  # under torchrun: the model in DistributedDataParallel, for training steps
    callbacks: tuple[Callback, ...] = ()

    @property
    def run_dir(self) -> RunDir:
        return self.log.run_dir

    def payload(self, with_state: bool) -> dict[str, Any]:
        """best.pt's (with_state=False) or last.pt's contents."""
        return checkpoint.pack(self.cfg, DataMeta.of(self.data), self.state.state_dict(), with_state)


class Trainer:
    """Trains a run to its last epoch, then scores best.pt on the test split.

    Under torchrun every rank runs the same trainer; rank 0 alone writes the run directory.
    """

    def __init__(self, run: Run, out: Output, stop: GracefulStop) -> None:
        self.run, self.out, self.stop = run, out, stop
        self.steps_per_epoch = math.ceil(len(run.data.train) / run.cfg.train.batch_size)

    def fit(self) -> dict[str, Any]:
        """The remaining epochs, then the test score of best.pt; returns the summary (what `--json` prints)."""
        run, state = self.run, self.run.state
        with self._ending_recorded():
            if run.dist.active:
                run.ddp = run.dist.wrap(state.model, run.device)
            run.log.summary("running", state, count_parameters(state.model))
            state.model.train()
            try:
                with self.stop:  # to the last epoch, or train.patience epochs after the best one
                    while state.epoch < run.cfg.train.epochs and not state.stalled(run.cfg.train.patience):
                        self.epoch()
            finally:
                run.log.close()
            return self._test_best()

    def epoch(self) -> None:
        """One epoch (or what a resume left of it): steps, checks, validation, the record, callbacks."""
        run, state, epochs = self.run, self.run.state, self.run.cfg.train.epochs
        if state.cursor.order is None:
            state.begin_epoch(len(run.data.train))
        started = time.perf_counter()
        with self.out.progress(self.steps_per_epoch, f"epoch {state.epoch + 1}/{epochs}",
                               steps_after=(epochs - state.epoch - 1) * self.steps_per_epoch) as bar:
            bar.advance(state.cursor.step)
            loss, stopping = self.run_steps(bar, self.steps_per_epoch)
        state.cursor.elapsed += time.perf_counter() - started
        self._check_finite(loss, weights=True)
        if stopping:
            self._interrupt()
        if state.scheduler is not None and run.cfg.train.scheduler not in PER_BATCH_SCHEDULERS:
            state.scheduler.step()  # scheduler=step; the per-batch ones step in run_steps
        row = self._validate()
        improved = state.end_epoch(row)
        self._record(row, improved)
        self._call_back(row)
        if self._poll_stop(loss)[1]:  # a signal during validation or saving: stop at the epoch boundary
            self._interrupt()

    def run_steps(self, bar: Any, until: int) -> tuple[torch.Tensor, bool]:
        """The current epoch's steps from `cursor.step` up to `until`, exactly as training runs them.

        Each step: index the batch on the device, forward, backward, clip, optimizer and scheduler step,
        add to the epoch's metric sums (no host sync where the device has float64), advance the bar.
        Every `check_every` steps and after the epoch's last one, the loss is checked to be finite and a
        stop decided (under torchrun by every rank together; without it a stop is polled every step).
        Returns (last loss, stop requested?); `seqclf bench` times this same method.
        """
        run, stop = self.run, self.stop
        t, state, data = run.cfg.train, run.state, run.data
        model, cursor, scaler = state.model, state.cursor, state.scaler
        batch, steps_per_epoch = t.batch_size, self.steps_per_epoch
        clip = t.grad_clip if t.grad_clip > 0 else math.inf  # inf: measure the norm, never clip
        # non-finite check: free on CPU, a sync on GPU; under torchrun also the shared stop verdict, a
        # collective that cost 13% of the CPU throughput when taken every step (2 ranks, gloo)
        check_every = 1 if run.device.type == "cpu" and run.ddp is None else 25
        order = cursor.order.to(run.device)
        loss = torch.zeros((), device=run.device)  # resumed exactly at an epoch's end: no step runs
        while cursor.step < until:
            idx = order[cursor.step * batch:(cursor.step + 1) * batch]  # (B,) the global batch
            if run.ddp is None:
                # index_select copies whole rows: same values as x[idx], several times faster on CPU
                x, y = data.train.x.index_select(0, idx), data.train.y.index_select(0, idx)  # (B, T, F), (B,)
                with autocast(t, run.device):
                    logits = model(x)  # (B, num_classes)
                    loss = F.cross_entropy(logits.float(), y)
                loss_sum = loss.detach().to(state.policy.step_dtype) * len(y)
            else:
                logits, y, loss, loss_sum = run.dist.shard_forward(run.ddp, data.train, idx, autocast(t, run.device))
            state.optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(state.optimizer)
            grads = [p.grad for p in model.parameters() if p.grad is not None]
            norm = nn.utils.get_total_norm(grads)  # before clipping
            if clip < math.inf:  # what clip_grad_norm_ does; with clipping off it would only scale by 1.0
                nn.utils.clip_grads_with_norm_(model.parameters(), clip, norm)
            scaler.step(state.optimizer)
            scaler.update()
            if state.scheduler is not None and t.scheduler in PER_BATCH_SCHEDULERS:
                state.scheduler.step()
            state.add_step(loss_sum, (logits.detach().argmax(1) == y).sum(), norm.detach(), clip)
            cursor.step += 1
            bar.advance()
            if cursor.step % check_every == 0 or cursor.step == steps_per_epoch:
                state.settle()  # a device without float64: its pending steps into the host's sums (a sync anyway)
                loss, stopping = self._poll_stop(loss)  # under torchrun: taken together, at the same steps
                bar.show(cursor.sums, len(y))  # live loss and accuracy of the epoch so far (a no-op without a bar)
                self._check_finite(loss)
                if stopping:
                    return loss, True
            elif run.ddp is None and stop.should_stop():
                state.settle()
                return loss, True
        state.settle()
        return loss, False

    def _poll_stop(self, loss: torch.Tensor) -> tuple[torch.Tensor, bool]:
        """(The loss to check, stop now?): this process's own; under torchrun the global batch's mean
        loss and a stop if any rank got a signal, the same on every rank."""
        if self.run.ddp is None:
            return loss, self.stop.should_stop()
        stop = self.stop
        loss, signum = self.run.dist.decide(loss, (stop.signum or signal.SIGINT) if stop.should_stop() else 0)
        if signum:
            stop.signum = signum
        return loss, bool(signum)

    def _check_finite(self, loss: torch.Tensor, weights: bool = False) -> None:
        """Stop on a non-finite loss (checked every few steps) or weights (checked before each save)."""
        state = self.run.state
        finite = bool(torch.isfinite(loss).item())
        if finite and weights:
            finite = all(bool(torch.isfinite(p).all()) for p in state.model.parameters())
        if finite:
            return
        self.run.log.summary("failed", state, count_parameters(state.model))
        raise NonFinite(None if torch.isfinite(loss) else loss.item(), state.epoch + 1, state.cursor.step,
                        self.run.run_dir, self.run.cfg.train)

    def _validate(self) -> dict[str, Any]:
        """The epoch's metrics row: its training sums (over every rank under torchrun) and the validation score."""
        run, n = self.run, len(self.run.data.train)
        cursor = run.state.cursor
        run.dist.sum_(cursor.sums["loss"], cursor.sums["correct"])  # under torchrun: every rank's share of the epoch
        sums = {k: float(v) for k, v in cursor.sums.items()}
        applied = max(sums["steps"] - sums["skipped"], 1)  # fp16: steps GradScaler skipped have no finite norm
        val = self._score(run.data.val)
        return {"epoch": run.state.epoch + 1, "train_loss": sums["loss"] / n, "train_accuracy": sums["correct"] / n,
                "val_loss": val["loss"], "val_accuracy": val["accuracy"], "lr": cursor.lr,
                "grad_norm": sums["grad_norm"] / applied, "clipped_fraction": sums["clipped"] / applied,
                "skipped_steps": int(sums["skipped"]),
                "seconds": cursor.elapsed, "examples_per_s": n / max(cursor.elapsed, 1e-9)}

    def _record(self, row: dict[str, Any], improved: bool) -> None:
        """The finished epoch on disk and on the console: best.pt (when improved), last.pt,
        metrics.jsonl, summary.json, the epoch's line."""
        run = self.run
        if improved:
            run.log.save_best(run.payload(with_state=False))
        self._save_last()
        run.log.epoch(run.state.history)
        run.log.summary("running", run.state, count_parameters(run.state.model))
        self.out.epoch({**row, "best": improved}, run.cfg.train.epochs)

    def _call_back(self, row: dict[str, Any]) -> None:
        """The callbacks with the finished epoch's row; one that raises Pruned ends the run `pruned`."""
        try:
            for callback in self.run.callbacks:
                callback(row)
        except Pruned:
            self.run.log.summary("pruned", self.run.state, count_parameters(self.run.state.model))
            raise

    def _test_best(self) -> dict[str, Any]:
        """Score best.pt on the test split, exactly as `seqclf eval` will, and write summary.json."""
        run, model = self.run, self.run.state.model
        if run.dist.is_main:  # under torchrun the others get its weights: only rank 0 sees the run directory
            model.load_state_dict(run.run_dir.load_best()["model"])
        run.dist.broadcast_(model.state_dict().values())
        test = self._score(run.data.test)
        summary = run.log.summary("finished", run.state, count_parameters(model), test,
                                  stopped_early=run.state.epoch < run.cfg.train.epochs)
        if summary["stopped_early"]:
            self.out.info(stopped_early(run.state.epoch, run.cfg.train, run.state.best_epoch))
        self.out.info(f"best val accuracy {summary['val_accuracy']:.4f} (epoch {summary['best_epoch']}), "
                      f"test accuracy [bold]{test['accuracy']:.4f}[/] on {test['n']:,} examples; "
                      f"{summary['seconds']:.1f}s training. Checkpoint: {summary['checkpoint']}")
        return summary

    def _interrupt(self) -> NoReturn:
        """Save last.pt where the run stopped (rank 0, the others waiting) and raise RunInterrupted."""
        run, cursor = self.run, self.run.state.cursor
        run.dist.sum_(cursor.sums["loss"], cursor.sums["correct"])  # rank 0 saves the epoch's sums
        self._save_last()
        run.log.summary("interrupted", run.state, count_parameters(run.state.model))
        run.dist.barrier()  # every rank stays until last.pt is written
        raise RunInterrupted(self.stop.signum or signal.SIGINT, run.run_dir, run.state.epoch,
                             None if cursor.order is None else cursor.step)

    @contextlib.contextmanager
    def _ending_recorded(self) -> Iterator[None]:
        """Whatever stops the run, summary.json does not stay "running": it ends interrupted (a signal,
        Ctrl-C) or failed (anything else) where it can be written. Out of memory, and under torchrun a
        collective that fails because another rank went away, become messages."""
        run = self.run
        try:
            try:
                yield
            except RuntimeError as exc:
                oom = is_out_of_memory(exc)
                if not (oom or (run.dist.active and distributed.is_peer_failure(exc))):
                    raise
                run.log.summary("failed", run.state, count_parameters(run.state.model))
                if oom:
                    raise OutOfMemory(exc, run.device, run.cfg.train.batch_size, f"training {run.run_dir}",
                                      str(run.run_dir.config_path)) from None
                raise LostContact(run.dist.rank, exc) from None
        except BaseException as exc:
            if run.log.status in (None, "running"):  # None: stopped while writing the first summary
                ended = "interrupted" if isinstance(exc, (KeyboardInterrupt, Interrupted)) else "failed"
                try:
                    run.log.ended(ended, run.state, count_parameters(run.state.model))
                except (Exception, KeyboardInterrupt):  # e.g. the disk is still full: `seqclf runs` reads the lock
                    pass
            raise

    def _score(self, split: Split) -> dict[str, Any]:
        """`score` as one process computes it: under torchrun each rank scores its contiguous share of
        the split (no padding, no example twice) and the counts are summed over the ranks."""
        run = self.run
        if run.dist.active:
            share = run.dist.shard(len(split))
            split = Split(split.x[share], split.y[share])
        return score(run.state.model, split, run.data.num_classes, autocast(run.cfg.train, run.device),
                     reduce=run.dist.sum_ if run.dist.active else None)

    def _save_last(self) -> None:
        """last.pt, written by rank 0; under torchrun it keeps every rank's RNG state (a collective)."""
        run = self.run
        rank_rng = run.dist.gather_object(rng.rng_state(run.device)) if run.dist.active else None
        if run.dist.is_main:
            payload = run.payload(with_state=True)
            if rank_rng is not None:
                payload["state"]["rank_rng"] = rank_rng
            run.log.save_last(payload)
