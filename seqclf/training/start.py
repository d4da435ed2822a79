"""Starting and resuming runs: resumable to the bit, interrupt-safe.

`train` makes a new run directory, `resume` continues one from its last.pt; both set up
through prepare.py, build the TrainingState (`new_run`) and hand it to `Trainer(...).fit()` (trainer.py).
What a checkpoint holds is checkpoint.py's business, the run directory's files rundir.py's,
what may change on resume resumable.py's.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from seqclf.config import Config
from seqclf.config.limits import UNUSED_DROPOUT, dropout_unused
from seqclf.console import Output, as_yaml
from seqclf.data.datasets import Data
from seqclf.model.classifier import (
    SequenceClassifier,
    check_weights_fit,
    count_parameters,
    describe,
    load_weights,
)
from seqclf.store import checkpoint
from seqclf.store import lock as runlock
from seqclf.store.checkpoint import Checkpoint
from seqclf.store.naming import check_writable
from seqclf.store.rundir import RunDir
from seqclf.store.runlog import RunLog, tensorboard_writer
from seqclf.training import distributed
from seqclf.training.devices import is_out_of_memory
from seqclf.training.failures import OutOfMemory
from seqclf.training.optim import build_optimizer, build_scheduler
from seqclf.training.prepare import check_same_data, prepare
from seqclf.training.resumable import StateDoesNotFit, nothing_to_train, read_resumable
from seqclf.training.rng import seed_everything
from seqclf.training.signals import GracefulStop, sigterm_stops
from seqclf.training.state import TrainingState
from seqclf.training.trainer import Callback, Run, Trainer

__all__ = ["GracefulStop", "Run", "Trainer", "new_run", "resume", "train"]

def train(cfg: Config, *, out: Output | None = None, stop: GracefulStop | None = None,
          callbacks: Iterable[Callback] = (), summary_extra: dict[str, Any] | None = None,
          init_from: str | Path | None = None) -> dict[str, Any]:
    """Train a new run from a validated config; returns the summary (what `--json` prints).

    `init_from`: a checkpoint whose weights the model starts from (fine-tuning). Under torchrun
    every rank calls this (see seqclf.training.distributed): rank 0 alone prints and writes.
    """
    # the run directory's lock, released at the end; SIGTERM in set-up stops at once, leaving the files intact
    with distributed.session() as dist, runlock.session(), sigterm_stops():
        out = (out or Output()) if dist.is_main else Output(quiet=True)
        extra = dict(summary_extra or {})
        with dist.agree():  # under torchrun: a failure on any rank stops every rank, reported once
            dist.check_batch_size(cfg.train.batch_size)
            if dist.is_main:
                check_writable(Path(cfg.output.dir))  # before loading data or training
            tensorboard_writer(cfg.output, None)
            start = checkpoint.read(init_from) if init_from is not None else None
            ready = prepare(cfg, dist=dist)
            cfg, data, device = ready.cfg, ready.data, ready.device
            if start is not None:  # before the run directory is made
                check_weights_fit(start.model, start.config.model, cfg.model, data.input_size, data.num_classes,
                                  f"--init-from {init_from}")
        for warning in data.warnings:  # e.g. idx labels that leave classes without examples (rank 0 prints)
            out.warn(warning)
        with dist.agree():  # once every rank is ready: exactly one run directory, made by rank 0
            run_dir = RunDir.create(cfg) if dist.is_main else None
            if start is not None:
                extra["init_from"] = str(init_from)
            log = RunLog(dist.broadcast_object(run_dir), cfg, dist.is_main, extra)
            log.write_config()
        run = new_run(cfg, log, data, device, dist=dist, callbacks=callbacks)
        if start is not None:
            load_weights(run.state.model, start.model, f"--init-from {init_from}")
        if dropout_unused(cfg.model.dropout, cfg.model.num_layers):
            out.warn(f"model.dropout={as_yaml(cfg.model.dropout, 3)} has no effect with model.num_layers=1: it acts "
                     f"between recurrent layers", once=UNUSED_DROPOUT)
        out.info(f"run [bold]{run.run_dir}[/]: {describe(cfg.model)}, {count_parameters(run.state.model):,} "
                 f"parameters, {len(data.train):,} train / {len(data.val):,} val / {len(data.test):,} test examples "
                 f"on {device}{f' x {dist.world_size} ranks ({dist.backend})' if dist.active else ''}")
        return Trainer(run, out, stop or GracefulStop()).fit()


def resume(run_dir: str | Path, overrides: list[str] | tuple[str, ...] = (), *, out: Output | None = None,
           stop: GracefulStop | None = None) -> dict[str, Any]:
    """Continue a run from its last.pt with its own resolved config (`--set train.epochs=N` extends it).

    Under torchrun rank 0 reads the run and hands it to the others; the world size may differ from
    the original run's (train.batch_size must divide by it).
    """
    run_dir = RunDir(run_dir)
    with distributed.session() as dist, runlock.session(), sigterm_stops():
        out = (out or Output()) if dist.is_main else Output(quiet=True)
        with dist.agree():
            found = read_resumable(run_dir, overrides) if dist.is_main else None
            if found is not None:
                found = (*found, nothing_to_train(run_dir, *found))
        cfg, saved, finished = dist.broadcast_object(found)
        if finished is not None:  # every epoch done: say so, write nothing
            out.info(finished[0])
            return finished[1]
        with dist.agree():
            dist.check_batch_size(cfg.train.batch_size)
            ready = prepare(cfg, meta=saved.data, source=saved.path, dist=dist)
            check_same_data(ready.data, saved.data, cfg.data.root, run_dir)
            log = RunLog(run_dir, cfg, dist.is_main, _extra(run_dir) if dist.is_main else None)
            try:
                run = new_run(cfg, log, ready.data, ready.device, saved=saved, dist=dist)
            except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as exc:  # a damaged or foreign state
                if is_out_of_memory(exc):  # the device is full, the file is fine
                    raise OutOfMemory(exc, ready.device, cfg.train.batch_size, f"restoring {saved.path}",
                                      str(run_dir.config_path), str(run_dir.best)) from None
                raise StateDoesNotFit(saved, exc) from None
            log.write_config()
            repaired = run_dir.repair_metrics(saved.history) if dist.is_main else None
            if repaired:
                out.warn(repaired)
        out.info(f"resuming [bold]{run_dir}[/] at epoch {run.state.epoch + 1}, step {run.state.cursor.step}"
                 f"{f' x {dist.world_size} ranks ({dist.backend})' if dist.active else ''}")
        return Trainer(run, out, stop or GracefulStop()).fit()


def _extra(run_dir: RunDir) -> dict[str, Any]:
    """What a search or --init-from added to the run's summary, kept when the run is resumed."""
    summary = run_dir.read_summary() or {}
    return {key: summary[key] for key in ("study", "trial", "init_from") if key in summary}


def new_run(cfg: Config, log: RunLog, data: Data, device: torch.device, saved: Checkpoint | None = None,
            dist: distributed.Context | None = None, callbacks: Iterable[Callback] = ()) -> Run:
    """Model, optimizer, scheduler and progress: fresh from the seed, or exactly as `saved` left them."""
    seed_everything(cfg.seed)
    model = SequenceClassifier(cfg.model, data.input_size, data.num_classes).to(device)
    optimizer = build_optimizer(cfg.train, model.parameters())
    scheduler = build_scheduler(cfg.train, optimizer, math.ceil(len(data.train) / cfg.train.batch_size))
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.train.precision == "fp16")
    state = TrainingState(model, optimizer, scheduler, torch.Generator().manual_seed(cfg.seed), device, scaler)
    if saved is not None:
        state.load_state_dict(saved.training_state())
    dist = dist or distributed.Context()
    if dist.active:
        dist.split_streams(cfg.seed, state, saved.state if saved is not None else None)
    return Run(cfg, data, state, log, device, dist, callbacks=tuple(callbacks))


