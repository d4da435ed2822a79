"""Starting and resuming runs: resumable to the bit, interrupt-safe.

`train` makes a new run directory, `resume` continues one from its last.pt; both set up
through setup.prepare, build the TrainingState (`new_run`) and hand it to `Trainer(...).fit()` (trainer.py).
What a checkpoint holds is checkpoint.py's business, what a run writes runlog.py's.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable

import torch

from seqclf.config import (
    Config,
    apply_overrides,
    config_from_dict,
    keys_where,
    load_config,
    parse_overrides,
    to_dict,
)
from seqclf.console import Output
from seqclf.data.datasets import Data
from seqclf.errors import SeqclfError
from seqclf.model.classifier import SequenceClassifier, count_parameters, load_weights
from seqclf.store import checkpoint
from seqclf.store import lock as runlock
from seqclf.store import rundir as runs
from seqclf.store.checkpoint import Checkpoint, CheckpointError
from seqclf.store.runlog import RunLog, tensorboard_writer, write_metrics
from seqclf.training import distributed
from seqclf.training.devices import (
    has_fp16,
    is_out_of_memory,
    precision_change_allowed,
    resolve_device,
)
from seqclf.training.failures import OutOfMemory
from seqclf.training.optim import PER_BATCH_SCHEDULERS, build_optimizer, build_scheduler
from seqclf.training.prepare import check_same_data, prepare
from seqclf.training.rng import seed_everything
from seqclf.training.signals import GracefulStop
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
    with distributed.session() as dist, runlock.session():  # the run directory's lock, released at the end
        out = (out or Output()) if dist.is_main else Output(quiet=True)
        extra = dict(summary_extra or {})
        with dist.agree():  # under torchrun: a failure on any rank stops every rank, reported once
            dist.check_batch_size(cfg.train.batch_size)
            if dist.is_main:
                runs.check_writable(Path(cfg.output.dir))  # before loading data or training
            tensorboard_writer(cfg.output, None)
            start = checkpoint.read(init_from) if init_from is not None else None
            ready = prepare(cfg, dist=dist)
            cfg, data, device = ready.cfg, ready.data, ready.device
        for warning in data.warnings:  # e.g. idx labels that leave classes without examples (rank 0 prints)
            out.warn(warning)
        with dist.agree():  # once every rank is ready: exactly one run directory, made by rank 0
            run_dir = runs.create_run_dir(cfg) if dist.is_main else None
            if start is not None:
                extra["init_from"] = str(init_from)
            log = RunLog(dist.broadcast_object(run_dir), cfg, dist.is_main, extra)
            log.write_config()
        run = new_run(cfg, log, data, device, dist=dist, callbacks=callbacks)
        if start is not None:
            load_weights(run.state.model, start.model, f"--init-from {init_from}")
        if cfg.model.dropout > 0 and cfg.model.num_layers < 2:  # allowed so sweeps over depth keep one config
            out.warn(f"model.dropout={cfg.model.dropout} has no effect with model.num_layers=1: it acts "
                     f"between recurrent layers")
        out.info(f"run [bold]{run.run_dir}[/]: {cfg.model.cell} {cfg.model.num_layers}x{cfg.model.hidden_size}"
                 f"{' bidirectional' if cfg.model.bidirectional else ''}, {count_parameters(run.state.model):,} "
                 f"parameters, {len(data.train):,} train / {len(data.val):,} val / {len(data.test):,} test examples "
                 f"on {device}{f' x {dist.world_size} ranks ({dist.backend})' if dist.active else ''}")
        return Trainer(run, out, stop or GracefulStop()).fit()


def resume(run_dir: str | Path, overrides: list[str] | tuple[str, ...] = (), *, out: Output | None = None,
           stop: GracefulStop | None = None) -> dict[str, Any]:
    """Continue a run from its last.pt with its own resolved config (`--set train.epochs=N` extends it).

    Under torchrun rank 0 reads the run and hands it to the others; the world size may differ from
    the original run's (train.batch_size must divide by it).
    """
    run_dir = Path(run_dir)
    with distributed.session() as dist, runlock.session():
        out = (out or Output()) if dist.is_main else Output(quiet=True)
        with dist.agree():
            found = _read_resumable(run_dir, overrides) if dist.is_main else None
        cfg, saved = dist.broadcast_object(found)
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
                                      str(run_dir / runs.CONFIG), str(run_dir / runs.BEST)) from None
                raise CheckpointError(f"{saved.path}: its training state is incomplete or does not fit "
                                      f"its config ({type(exc).__name__}: "
                                      f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
            log.write_config()
            if dist.is_main:
                _rebuild_metrics(run_dir, saved, out)
        out.info(f"resuming [bold]{run_dir}[/] at epoch {run.state.epoch + 1}, step {run.state.cursor.step}"
                 f"{f' x {dist.world_size} ranks ({dist.backend})' if dist.active else ''}")
        return Trainer(run, out, stop or GracefulStop()).fit()


def _extra(run_dir: Path) -> dict[str, Any]:
    """What a search or --init-from added to the run's summary, kept when the run is resumed."""
    summary = runs.read_summary(run_dir) or {}
    return {key: summary[key] for key in ("study", "trial", "init_from") if key in summary}


def _read_resumable(run_dir: Path, overrides: list[str] | tuple[str, ...]) -> tuple[Config, Checkpoint]:
    """The run's config with the allowed `--set` changes, and its last.pt, both checked."""
    if not runs.is_run_dir(run_dir):
        raise SeqclfError(f"--resume {run_dir}: not a run directory (it should hold config.yaml and last.pt); "
                          f"`seqclf runs` lists the runs")
    runlock.acquire(run_dir)  # refuses while another process trains in it
    if runs.restartable(run_dir):
        raise SeqclfError(f"--resume {run_dir}: nothing to resume: it stopped before its first epoch ended "
                          f"(no last.pt). It is restartable under its name, losing nothing: seqclf train --config "
                          f"{run_dir / runs.CONFIG} --set output.dir={run_dir.parent} --set output.name={run_dir.name}")
    saved = checkpoint.read(run_dir / runs.LAST)
    saved.training_state()  # refuses a file without one
    allowed = keys_where("resume")
    changes = [*_edited(run_dir, saved.config, allowed), *parse_overrides(overrides)]
    refused = sorted({key for key, _ in changes} - allowed - {"train.precision"})  # precision: _check_precision
    if refused:
        raise SeqclfError(f"--resume: cannot change {', '.join(refused)}: it would change what the run computes. "
                          f"Only {', '.join(sorted(allowed))} may change; start a new run for the rest (its "
                          f"weights can start from this run's: seqclf train --config FILE --init-from "
                          f"{run_dir / runs.BEST}).")
    planned = saved.config.train.epochs
    cfg = config_from_dict(apply_overrides(to_dict(saved.config), changes), f"{run_dir / runs.CONFIG} with --set")
    _check_precision(run_dir, saved.config.train.precision, cfg)
    if cfg.train.epochs != planned and cfg.train.scheduler in PER_BATCH_SCHEDULERS:
        rename = f" --set output.name={cfg.output.name}-more" if cfg.output.name else ""
        raise SeqclfError(f"--resume: train.epochs cannot change with scheduler={cfg.train.scheduler}: its "
                          f"schedule spans exactly the planned {planned} epochs. To train longer, start a new run "
                          f"from this one's weights: seqclf train --config {run_dir / runs.CONFIG} --set "
                          f"train.epochs={cfg.train.epochs}{rename} --init-from {run_dir / runs.BEST}")
    if cfg.train.epochs < saved.epoch:
        raise SeqclfError(f"--resume: train.epochs={cfg.train.epochs} is fewer than the {saved.epoch} "
                          f"epochs already trained")
    _check_best(run_dir, saved)
    return cfg, saved


def _edited(run_dir: Path, trained: Config, allowed: frozenset[str]) -> list[tuple[str, Any]]:
    """config.yaml's edits to the config stored in last.pt (the run's truth), as (key, value) changes:
    keys that may change on resume are applied, any other edit is refused naming it."""
    path = run_dir / runs.CONFIG
    stored, written = runs.flatten(to_dict(trained)), runs.flatten(to_dict(load_config(path)))
    edited = {key: value for key, value in written.items() if stored.get(key) != value}
    refused = sorted(set(edited) - allowed)
    if refused:
        shown = "; ".join(f"{key}: {stored.get(key)!r} in last.pt, {edited[key]!r} in the file" for key in refused)
        raise SeqclfError(f"--resume {run_dir}: {path} was edited ({shown}), but a run continues with the config "
                          f"it trained with (stored in last.pt); only {', '.join(sorted(allowed))} may change on "
                          f"resume. Undo the edit, or start a new run with it (its weights can start from this "
                          f"run's: seqclf train --config FILE --init-from {run_dir / runs.BEST}).")
    return sorted(edited.items())


def _check_best(run_dir: Path, saved: Checkpoint) -> None:
    """best.pt must be there to finish a run (its test score comes from it): rebuilt from last.pt when
    that holds the same weights (saved at the best epoch's end), else a refusal that touches nothing."""
    best_epoch = saved.state.get("best_epoch", 0) if saved.state else 0
    path = run_dir / runs.BEST
    if not best_epoch:
        return
    try:
        checkpoint.load(path)
        return
    except CheckpointError:
        pass
    if best_epoch == saved.epoch and saved.state.get("order") is None:
        checkpoint.save(path, checkpoint.pack(saved.config, saved.data, saved.training_state(), with_state=False))
        return
    raise CheckpointError(f"--resume {run_dir}: {path} is missing or unreadable, so the weights of the best epoch "
                          f"({best_epoch}) are lost and the run cannot finish as it would have (its test score "
                          f"comes from best.pt). last.pt (epoch {saved.epoch}) is intact: score it with seqclf eval "
                          f"{run_dir / runs.LAST}, or start a new run from its weights with --init-from "
                          f"{run_dir / runs.LAST}. Nothing was changed.")


def _rebuild_metrics(run_dir: Path, saved: Checkpoint, out: Output) -> None:
    """metrics.jsonl from last.pt's history, the truth, when they differ (a kill between the two writes)."""
    try:
        rows: list[dict[str, Any]] | None = runs.read_metrics(run_dir)
    except SeqclfError:
        rows = None
    if rows != saved.history:
        write_metrics(run_dir, saved.history)
        out.warn(f"{run_dir / runs.METRICS} did not match last.pt ({'damaged' if rows is None else len(rows)} "
                 f"rows, {len(saved.history)} epochs): rebuilt from last.pt's history")


def _check_precision(run_dir: Path, saved: str, cfg: Config) -> None:
    """train.precision stays on resume, except that a CUDA fp16 run may go on in bf16 or fp32 where the
    device has no fp16 (seqclf.training.devices.precision_change_allowed)."""
    new, device = cfg.train.precision, resolve_device(cfg.train.device)
    if not precision_change_allowed(saved, new, device.type):
        raise SeqclfError(f"--resume: cannot change train.precision from {saved} to {new}: it would change what "
                          f"the run computes. Only a run trained in fp16 may continue in bf16 or fp32, on a device "
                          f"without fp16 (not CUDA); start a new run for the rest: seqclf train --config "
                          f"{run_dir / runs.CONFIG} --set train.precision={new} --init-from {run_dir / runs.BEST}")
    if new == "fp16" and not has_fp16(device.type):
        raise SeqclfError(f"--resume {run_dir}: the run trained with train.precision=fp16, which runs on CUDA only, "
                          f"and train.device={cfg.train.device} is {device} here. Continue it in fp32 (or bf16; its "
                          f"fp16 loss scale is then dropped): seqclf train --resume {run_dir} --set "
                          f"train.precision=fp32")


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


