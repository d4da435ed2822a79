"""The training loop, written out: plain PyTorch, resumable to the bit, interrupt-safe."""

from __future__ import annotations

import math
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from seqclf import checkpoint, distributed, runs
from seqclf.checkpoint import CheckpointError
from seqclf.config import (
    Config,
    apply_overrides,
    config_from_dict,
    parse_overrides,
    to_dict,
    to_yaml,
)
from seqclf.console import Output
from seqclf.data import Data, Split, load_data
from seqclf.errors import Interrupted, SeqclfError, TrainingError
from seqclf.evaluate import check_data_fits, score
from seqclf.model import SequenceClassifier, count_parameters, resolve_hidden_size
from seqclf.runtime import (
    PER_BATCH_SCHEDULERS,
    GracefulStop,
    autocast,
    build_optimizer,
    build_scheduler,
    configure_threads,
    resolve_device,
    seed_everything,
)

# Keys that `--resume` may change: they do not change what the run computes.
RESUMABLE_KEYS = {"train.epochs", "train.device", "train.num_threads", "train.dist_backend", "data.root",
                  "data.download"}


# ---------------------------------------------------------------- run state


@dataclass
class Position:
    """Where the run is: epochs finished, steps done in the current epoch, and its data order."""

    epoch: int = 0
    step: int = 0
    order: torch.Tensor | None = None  # (n_train,) the current epoch's permutation
    sums: dict[str, torch.Tensor] = field(default_factory=dict)  # partial train metrics of the epoch
    elapsed: float = 0.0  # training seconds already spent in the current epoch
    lr: float = 0.0  # the rate when the current epoch began (metrics.jsonl's lr), even if resumed mid-epoch
    best_accuracy: float = -1.0
    best_epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    total_seconds: float = 0.0


def _zero_sums(device: torch.device) -> dict[str, torch.Tensor]:
    # Accumulated on the device: no host sync per step.
    return {name: torch.zeros((), dtype=torch.float64, device=device)
            for name in ("loss", "correct", "grad_norm", "clipped", "steps")}


@dataclass
class Run:
    cfg: Config
    run_dir: Path
    data: Data
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    shuffle: torch.Generator
    device: torch.device
    position: Position
    dist: distributed.Context = field(default_factory=distributed.Context)  # torchrun's rank and world
    ddp: nn.Module | None = None  # under torchrun: the model in DistributedDataParallel, for training steps

    def payload(self, with_state: bool) -> dict[str, Any]:
        """Checkpoint contents: tensors and plain values only."""
        data = {"mean": self.data.mean, "std": self.data.std, "permutation": self.data.permutation,
                "input_size": self.data.input_size, "seq_len": self.data.seq_len,
                "num_classes": self.data.num_classes}
        pos = self.position
        out: dict[str, Any] = {"config": to_dict(self.cfg), "model": self.model.state_dict(), "data": data,
                               "epoch": pos.epoch, "history": list(pos.history)}
        if with_state:
            out["state"] = {
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
                "step": pos.step, "order": pos.order, "sums": {k: v.cpu() for k, v in pos.sums.items()},
                "elapsed": pos.elapsed, "best_accuracy": pos.best_accuracy, "best_epoch": pos.best_epoch,
                "total_seconds": pos.total_seconds, "lr": pos.lr, "rng": checkpoint.rng_state(),
                "shuffle": self.shuffle.get_state(),
            }
        return out


# ---------------------------------------------------------------- public entry points


def train(cfg: Config, *, out: Output | None = None, stop: GracefulStop | None = None) -> dict[str, Any]:
    """Train a new run from a validated config; returns the summary (what `--json` prints).

    Under torchrun every rank calls this (see seqclf.distributed): rank 0 alone prints and writes.
    """
    with distributed.session() as dist:
        out = (out or Output()) if dist.is_main else Output(quiet=True)
        with dist.agree():  # under torchrun: a failure on any rank stops every rank, reported once
            dist.check_batch_size(cfg.train.batch_size)
            if dist.is_main:
                runs.check_writable(Path(cfg.output.dir))  # before loading data or training
            _tensorboard_writer(cfg, None)
            device = dist.place(resolve_device(cfg.train.device, cfg.train.precision), cfg.train.device, cfg.train.dist_backend)
            configure_threads(cfg.train.num_threads, share=dist.local_world_size)
            data = load_data(cfg.data, cfg.seed, device)
            cfg = resolve_hidden_size(cfg, data.input_size, data.num_classes)
        with dist.agree():  # once every rank is ready: exactly one run directory, made by rank 0
            run_dir = runs.create_run_dir(cfg) if dist.is_main else None
            if run_dir is not None:
                checkpoint.write_text(run_dir / runs.CONFIG, to_yaml(cfg))
        run = _assemble(cfg, dist.broadcast_object(run_dir), data, device, state=None, dist=dist)
        if cfg.model.dropout > 0 and cfg.model.num_layers < 2:  # allowed so sweeps over depth keep one config
            out.warn(f"model.dropout={cfg.model.dropout} has no effect with model.num_layers=1: it acts "
                     f"between recurrent layers")
        out.info(f"run [bold]{run.run_dir}[/]: {cfg.model.cell} {cfg.model.num_layers}x{cfg.model.hidden_size}"
                 f"{' bidirectional' if cfg.model.bidirectional else ''}, {count_parameters(run.model):,} parameters, "
                 f"{len(data.train):,} train / {len(data.val):,} val / {len(data.test):,} test examples on {device}"
                 f"{f' x {dist.world_size} ranks ({dist.backend})' if dist.active else ''}")
        return _supervised(run, out, stop or GracefulStop())


def resume(run_dir: str | Path, overrides: list[str] | tuple[str, ...] = (), *, out: Output | None = None,
           stop: GracefulStop | None = None) -> dict[str, Any]:
    """Continue a run from its last.pt with its own resolved config (`--set train.epochs=N` extends it).

    Under torchrun rank 0 reads the run and hands it to the others; the world size may differ from
    the original run's (train.batch_size must divide by it).
    """
    run_dir = Path(run_dir)
    with distributed.session() as dist:
        out = (out or Output()) if dist.is_main else Output(quiet=True)
        with dist.agree():
            found = _read_resumable(run_dir, overrides) if dist.is_main else None
        cfg, payload = dist.broadcast_object(found)
        with dist.agree():
            dist.check_batch_size(cfg.train.batch_size)
            device = dist.place(resolve_device(cfg.train.device, cfg.train.precision), cfg.train.device, cfg.train.dist_backend)
            configure_threads(cfg.train.num_threads, share=dist.local_world_size)
            meta = payload["data"]
            data = load_data(cfg.data, cfg.seed, device, stats=(meta["mean"], meta["std"]), perm=meta["permutation"])
            check_data_fits(data, meta, cfg.data.root, run_dir / runs.LAST)
            try:
                run = _assemble(cfg, run_dir, data, device, state=payload, dist=dist)
            except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as exc:  # a damaged or foreign state
                raise CheckpointError(f"{run_dir / runs.LAST}: its training state is incomplete or does not fit "
                                      f"its config ({type(exc).__name__}: "
                                      f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
            if dist.is_main:
                checkpoint.write_text(run_dir / runs.CONFIG, to_yaml(cfg))
        pos = run.position
        out.info(f"resuming [bold]{run_dir}[/] at epoch {pos.epoch + 1}, step {pos.step}"
                 f"{f' x {dist.world_size} ranks ({dist.backend})' if dist.active else ''}")
        return _supervised(run, out, stop or GracefulStop())


def _read_resumable(run_dir: Path, overrides: list[str] | tuple[str, ...]) -> tuple[Config, dict[str, Any]]:
    """The run's config with the allowed `--set` changes, and its last.pt, both checked."""
    if not runs.is_run_dir(run_dir):
        raise SeqclfError(f"--resume {run_dir}: not a run directory (it should hold config.yaml and last.pt); "
                          f"`seqclf runs` lists the runs")
    payload = checkpoint.load(run_dir / runs.LAST)
    if "state" not in payload:
        raise CheckpointError(f"{run_dir / runs.LAST}: holds no training state to resume from")
    saved = payload["config"]
    changes = parse_overrides(overrides)
    refused = sorted({key for key, _ in changes} - RESUMABLE_KEYS)
    if refused:
        raise SeqclfError(f"--resume: cannot change {', '.join(refused)}: it would change what the run computes. "
                          f"Only {', '.join(sorted(RESUMABLE_KEYS))} may change; start a new run for the rest.")
    cfg = config_from_dict(apply_overrides(saved, changes), f"{run_dir / runs.CONFIG} with --set")
    if cfg.train.epochs != saved["train"]["epochs"] and cfg.train.scheduler in PER_BATCH_SCHEDULERS:
        raise SeqclfError(f"--resume: train.epochs cannot change with scheduler={cfg.train.scheduler}: its "
                          f"schedule spans exactly the planned {saved['train']['epochs']} epochs")
    if cfg.train.epochs < payload["epoch"]:
        raise SeqclfError(f"--resume: train.epochs={cfg.train.epochs} is fewer than the {payload['epoch']} "
                          f"epochs already trained")
    return cfg, payload


# ---------------------------------------------------------------- internals


def _assemble(cfg: Config, run_dir: Path, data: Data, device: torch.device, state: dict | None,
              dist: distributed.Context | None = None) -> Run:
    """Model, optimizer, scheduler and position: fresh from the seed, or exactly as saved."""
    seed_everything(cfg.seed)
    model = SequenceClassifier(cfg.model, data.input_size, data.num_classes).to(device)
    optimizer = build_optimizer(cfg, model.parameters())
    steps_per_epoch = math.ceil(len(data.train) / cfg.train.batch_size)
    scheduler = build_scheduler(cfg, optimizer, steps_per_epoch)
    shuffle = torch.Generator().manual_seed(cfg.seed)
    position = Position(sums=_zero_sums(device))
    if state is not None:
        saved = state["state"]
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(saved["optimizer"])
        if scheduler is not None and saved["scheduler"] is not None:
            scheduler.load_state_dict(saved["scheduler"])
        shuffle.set_state(saved["shuffle"])
        checkpoint.set_rng_state(saved["rng"])
        position = Position(epoch=state["epoch"], step=saved["step"], order=saved["order"],
                            sums={k: v.to(device) for k, v in saved["sums"].items()}, elapsed=saved["elapsed"],
                            best_accuracy=saved["best_accuracy"], best_epoch=saved["best_epoch"],
                            history=list(state["history"]), total_seconds=saved["total_seconds"], lr=saved["lr"])
    dist = dist or distributed.Context()
    if dist.active:
        _split_streams(dist, cfg.seed, position, state)
    return Run(cfg, run_dir, data, model, optimizer, scheduler, shuffle, device, position, dist)


def _split_streams(dist: distributed.Context, seed: int, pos: Position, state: dict | None) -> None:
    """Under torchrun, after the identical set-up: each rank its own dropout stream (restored exactly
    when the world size is the one saved), and the epoch's saved partial sums on rank 0 only."""
    saved = state["state"].get("rank_rng") if state is not None else None
    if saved is not None and len(saved) == dist.world_size:
        checkpoint.set_rng_state(saved[dist.rank])
    elif dist.rank:
        torch.manual_seed(hash((seed, dist.rank, pos.epoch, pos.step)))  # ints hash the same in every process
    if state is not None and dist.rank:
        pos.sums["loss"].zero_()
        pos.sums["correct"].zero_()


def _loop(run: Run, out: Output, stop: GracefulStop) -> dict[str, Any]:
    cfg, model, data, pos = run.cfg, run.model, run.data, run.position
    t = cfg.train
    n_train = len(data.train)
    steps_per_epoch = math.ceil(n_train / t.batch_size)
    scaler = torch.amp.GradScaler(run.device.type, enabled=t.precision == "fp16")
    writer = _tensorboard_writer(cfg, run.run_dir) if run.dist.is_main else None
    _write_summary(run, "running")
    model.train()
    with stop:
        while pos.epoch < t.epochs:
            if pos.order is None:
                pos.order = torch.randperm(n_train, generator=run.shuffle)
                pos.sums, pos.step, pos.elapsed = _zero_sums(run.device), 0, 0.0
                pos.lr = run.optimizer.param_groups[0]["lr"]
            lr = pos.lr
            started = time.perf_counter()
            with out.progress(steps_per_epoch, f"epoch {pos.epoch + 1}/{t.epochs}") as bar:
                bar.advance(pos.step)
                loss, stopped = run_steps(run, bar, stop, steps_per_epoch, scaler)
            pos.elapsed += time.perf_counter() - started
            _check_finite(run, loss, pos, weights=True)
            if stopped:
                return _interrupted(run, out, stop, writer)
            _finish_epoch(run, out, lr, writer)
            if _verdict(run, stop, loss)[1]:  # a signal during validation or saving: stop at the epoch boundary
                return _interrupted(run, out, stop, writer)
    if writer is not None:
        writer.close()
    return _final(run, out)


def run_steps(run: Run, bar: Any, stop: GracefulStop, until: int,
              scaler: torch.amp.GradScaler) -> tuple[torch.Tensor, bool]:
    """The current epoch's steps from `pos.step` up to `until`, exactly as training runs them.

    Each step: index the batch on the device, forward, backward, clip, optimizer and scheduler
    step, add to the epoch's metric sums (on the device: no host sync), advance the bar, check
    the loss is finite. Returns (last loss, whether a stop was requested). `seqclf bench` times
    this same function.
    """
    cfg, model, data, pos = run.cfg, run.model, run.data, run.position
    t = cfg.train
    batch, steps_per_epoch = t.batch_size, math.ceil(len(data.train) / t.batch_size)
    clip = t.grad_clip if t.grad_clip > 0 else math.inf  # inf: measure the norm, never clip
    # non-finite check: free on CPU, a sync on GPU; under torchrun also the shared stop verdict, a
    # collective that cost 13% of the CPU throughput when taken every step (2 ranks, gloo)
    check_every = 1 if run.device.type == "cpu" and run.ddp is None else 25
    order = pos.order.to(run.device)
    loss = torch.zeros((), device=run.device)  # resumed exactly at an epoch's end: no step runs
    while pos.step < until:
        idx = order[pos.step * batch:(pos.step + 1) * batch]  # (B,) the global batch
        if run.ddp is None:
            # index_select copies whole rows: same values as x[idx], several times faster on CPU
            x, y = data.train.x.index_select(0, idx), data.train.y.index_select(0, idx)  # (B, T, F), (B,)
            with autocast(cfg, run.device):
                logits = model(x)  # (B, num_classes)
                loss = F.cross_entropy(logits.float(), y)
            loss_sum = loss.detach().double() * len(y)
        else:
            logits, y, loss, loss_sum = _shard_forward(run, idx)
        run.optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(run.optimizer)
        norm = nn.utils.get_total_norm([p.grad for p in model.parameters() if p.grad is not None])  # before clipping
        if clip < math.inf:  # what clip_grad_norm_ does; with clipping off it would only scale by 1.0
            nn.utils.clip_grads_with_norm_(model.parameters(), clip, norm)
        scaler.step(run.optimizer)
        scaler.update()
        if run.scheduler is not None and t.scheduler in PER_BATCH_SCHEDULERS:
            run.scheduler.step()
        sums = pos.sums
        sums["loss"] += loss_sum
        sums["correct"] += (logits.detach().argmax(1) == y).sum()
        sums["grad_norm"] += norm.detach().double()
        sums["clipped"] += (norm.detach() > clip).double()
        sums["steps"] += 1
        pos.step += 1
        bar.advance()
        if pos.step % check_every == 0 or pos.step == steps_per_epoch:
            loss, stopping = _verdict(run, stop, loss)  # under torchrun: taken together, at the same steps
            _check_finite(run, loss, pos)
            if stopping:
                return loss, True
        elif run.ddp is None and stop.should_stop():
            return loss, True
    return loss, False


def _shard_forward(run: Run, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Under torchrun: this rank's contiguous share of the global batch `idx` (B,).

    Its summed loss is scaled by world_size / B, so DDP's mean of the ranks' gradients is the
    gradient of the mean over the whole batch: what one process computes. Returns (logits (b, C),
    labels (b,), the scaled loss, the unscaled float64 sum for the epoch's metrics).
    """
    data, dist = run.data.train, run.dist
    mine = idx[dist.shard(len(idx))]  # (b,), b = B / world_size, or near it in the last batch
    x, y = data.x.index_select(0, mine), data.y.index_select(0, mine)  # (b, T, F), (b,)
    if len(mine) == 0:  # fewer examples left than ranks: still join the gradient all-reduce, with zeros
        x = data.x.index_select(0, idx[:1])  # (1, T, F)
    with autocast(run.cfg, run.device):
        logits = run.ddp(x)  # (b, num_classes)
        total = F.cross_entropy(logits.float(), y, reduction="sum") if len(mine) else logits.float().sum() * 0.0
    return logits[:len(mine)], y, total * (dist.world_size / len(idx)), total.detach().double()


def _verdict(run: Run, stop: GracefulStop, loss: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """(The loss to check, stop now?): this process's own; under torchrun the global batch's mean
    loss and a stop if any rank got a signal, the same on every rank."""
    if run.ddp is None:
        return loss, stop.should_stop()
    loss, signum = run.dist.decide(loss, (stop.signum or signal.SIGINT) if stop.should_stop() else 0)
    if signum:
        stop.signum = signum
    return loss, bool(signum)


def _check_finite(run: Run, loss: torch.Tensor, pos: Position, weights: bool = False) -> None:
    """Stop on a non-finite loss (checked every few steps) or weights (checked before each save)."""
    finite = bool(torch.isfinite(loss).item())
    if finite and weights:
        finite = all(bool(torch.isfinite(p).all()) for p in run.model.parameters())
    if finite:
        return
    _write_summary(run, "failed")
    what = f"loss ({loss.item()})" if not torch.isfinite(loss) else "weights"
    raise TrainingError(
        f"non-finite {what} at epoch {pos.epoch + 1}, step {pos.step}: training stopped and no "
        f"checkpoint was overwritten ({run.run_dir} keeps the last good ones). Remedies: a lower train.lr "
        f"(now {run.cfg.train.lr})"
        f"{', gradient clipping (train.grad_clip=1.0)' if run.cfg.train.grad_clip == 0 else ', a tighter train.grad_clip (now ' + str(run.cfg.train.grad_clip) + ')'}"
        f"{'' if run.cfg.train.precision == 'fp32' else ', or train.precision=fp32'}.")


def _finish_epoch(run: Run, out: Output, lr: float, writer: Any) -> None:
    pos, cfg, data = run.position, run.cfg, run.data
    if run.scheduler is not None and cfg.train.scheduler not in PER_BATCH_SCHEDULERS:
        run.scheduler.step()
    run.dist.sum_(pos.sums["loss"], pos.sums["correct"])  # under torchrun: every rank's share of the epoch
    sums = {k: float(v) for k, v in pos.sums.items()}
    n = len(data.train)
    val = _score(run, data.val)
    pos.epoch += 1
    row = {"epoch": pos.epoch, "train_loss": sums["loss"] / n, "train_accuracy": sums["correct"] / n,
           "val_loss": val["loss"], "val_accuracy": val["accuracy"], "lr": lr,
           "grad_norm": sums["grad_norm"] / max(sums["steps"], 1),
           "clipped_fraction": sums["clipped"] / max(sums["steps"], 1),
           "seconds": pos.elapsed, "examples_per_s": n / max(pos.elapsed, 1e-9)}
    pos.history.append(row)
    pos.total_seconds += pos.elapsed
    pos.order, pos.step, pos.elapsed, pos.sums = None, 0, 0.0, _zero_sums(run.device)
    improved = val["accuracy"] > pos.best_accuracy
    if improved:
        pos.best_accuracy, pos.best_epoch = val["accuracy"], pos.epoch
        if run.dist.is_main:
            checkpoint.save(run.run_dir / runs.BEST, run.payload(with_state=False))
    _save_last(run)
    if run.dist.is_main:
        runs.write_metrics(run.run_dir, pos.history)
    _write_summary(run, "running")
    out.epoch({**row, "best": improved}, cfg.train.epochs)
    if writer is not None:
        for key, value in row.items():
            if key != "epoch":
                writer.add_scalar(key, value, pos.epoch)
        writer.flush()


def _final(run: Run, out: Output) -> dict[str, Any]:
    """Score best.pt on the test split, exactly as `seqclf eval` will, and write summary.json."""
    if run.dist.is_main:  # under torchrun the others get its weights: only rank 0 sees the run directory
        run.model.load_state_dict(checkpoint.load(run.run_dir / runs.BEST)["model"])
    run.dist.broadcast_(run.model.state_dict().values())
    test = _score(run, run.data.test)
    summary = _write_summary(run, "finished", test)
    out.info(f"best val accuracy {summary['val_accuracy']:.4f} (epoch {summary['best_epoch']}), "
             f"test accuracy [bold]{test['accuracy']:.4f}[/] on {test['n']:,} examples; "
             f"{summary['seconds']:.1f}s training. Checkpoint: {summary['checkpoint']}")
    return summary


def _write_summary(run: Run, status: str, test: dict[str, Any] | None = None) -> dict[str, Any]:
    pos = run.position
    previous = (runs.read_summary(run.run_dir) or {}) if run.dist.is_main else {}
    summary = {
        "run_dir": str(run.run_dir), "checkpoint": str(run.run_dir / runs.BEST), "epochs": pos.epoch,
        "val_accuracy": pos.best_accuracy if pos.best_epoch else None, "best_epoch": pos.best_epoch,
        "test_accuracy": test["accuracy"] if test else previous.get("test_accuracy"),
        "test_loss": test["loss"] if test else previous.get("test_loss"),
        "seconds": pos.total_seconds, "parameters": count_parameters(run.model), "status": status,
    }
    if run.dist.is_main:
        checkpoint.write_json(run.run_dir / runs.SUMMARY, summary)
    return summary


def _interrupted(run: Run, out: Output, stop: GracefulStop, writer: Any) -> dict[str, Any]:
    run.dist.sum_(run.position.sums["loss"], run.position.sums["correct"])  # rank 0 saves the epoch's sums
    _save_last(run)
    _write_summary(run, "interrupted")
    run.dist.barrier()  # every rank stays until last.pt is written
    if writer is not None:
        writer.close()
    signum = stop.signum or signal.SIGINT
    name = signal.Signals(signum).name
    pos = run.position
    where = f"after epoch {pos.epoch}" if pos.order is None else f"at epoch {pos.epoch + 1}, step {pos.step}"
    raise Interrupted(f"{name}: stopped {where}; saved "
                      f"{run.run_dir / runs.LAST}. Continue with: seqclf train --resume {run.run_dir}", signum)


def _supervised(run: Run, out: Output, stop: GracefulStop) -> dict[str, Any]:
    """The loop; under torchrun, when a collective fails because another rank went away, a message."""
    try:
        if run.dist.active:
            run.ddp = run.dist.wrap(run.model, run.device)
        return _loop(run, out, stop)
    except RuntimeError as exc:
        if not (run.dist.active and distributed.is_peer_failure(exc)):
            raise
        _write_summary(run, "failed")
        raise run.dist.lost_contact(exc) from None


def _score(run: Run, split: Split) -> dict[str, Any]:
    """`score` as one process computes it: under torchrun each rank scores its contiguous share of
    the split (no padding, no example twice) and the counts are summed over the ranks."""
    if run.dist.active:
        share = run.dist.shard(len(split))
        split = Split(split.x[share], split.y[share])
    return score(run.model, split, run.data.num_classes, autocast(run.cfg, run.device),
                 reduce=run.dist.sum_ if run.dist.active else None)


def _save_last(run: Run) -> None:
    """last.pt, written by rank 0; under torchrun it keeps every rank's RNG state (a collective)."""
    rank_rng = run.dist.gather_object(checkpoint.rng_state()) if run.dist.active else None
    if run.dist.is_main:
        payload = run.payload(with_state=True)
        if rank_rng is not None:
            payload["state"]["rank_rng"] = rank_rng
        checkpoint.save(run.run_dir / runs.LAST, payload)


def _tensorboard_writer(cfg: Config, run_dir: Path | None) -> Any:
    """A SummaryWriter when output.tensorboard is on; run_dir=None only checks it can be made."""
    if not cfg.output.tensorboard:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise SeqclfError('output.tensorboard: needs the tensorboard package; install it with '
                          'pip install "seqclf[tensorboard]" or set output.tensorboard=false') from None
    return SummaryWriter(str(run_dir / "tensorboard")) if run_dir is not None else None
