"""torchrun support: its environment, the process group, rank-0 rules and the reductions.

Under `torchrun --nproc_per_node=N -m seqclf train ...` every rank runs the same program on its
own device (`cuda:LOCAL_RANK`, or the CPU) and takes a contiguous share of every global batch;
DistributedDataParallel averages the gradients. Only rank 0 prints and writes files. Whatever
ends a run early (a failure during set-up, a non-finite loss, a signal) is decided together, so
every rank stops at the same step and rank 0 alone reports it (seqclf.training.ranks: who speaks).
Without torchrun (or with WORLD_SIZE=1) the Context is inactive and its collectives do nothing.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from seqclf.errors import SeqclfError, first_line
from seqclf.training import rng
from seqclf.training.failures import LostContact

ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")  # what torchrun sets for each rank
TIMEOUT = timedelta(minutes=10)  # a rank that waits this long on the others gives up with an error
# How gloo and nccl say that another rank went away. Not every NCCL error: a local one (a CUDA fault,
# invalid usage) is this rank's own failure and keeps its traceback.
PEER_SIGNS = ("Connection closed by", "Connection reset by peer", "Broken pipe", "timed out", "Timed out",
              "Socket Timeout", "collective operation timeout", "remote process", "ncclRemoteError",
              "communicator was aborted")


@dataclass
class Context:
    """This process's place in the run: its rank, the world, and what carries the gradients."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0  # the rank on this machine: the index of its GPU
    local_world_size: int = 1  # ranks on this machine: they share its CPU cores
    backend: str = "none"  # gloo or nccl once placed; none for a single process
    group: Any = None  # process group for tensors on the training device (None: the default group)

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # ------------------------------------------------------------ set-up (no collectives)

    def check_batch_size(self, batch_size: int) -> None:
        if batch_size % self.world_size:
            lower = max(self.world_size, batch_size - batch_size % self.world_size)
            raise SeqclfError(
                f"train.batch_size={batch_size} cannot be split between the {self.world_size} ranks torchrun "
                f"started: it is the global batch, and each rank takes an equal share of it. Use a multiple of "
                f"the world size {self.world_size} (e.g. train.batch_size={lower}) or start a number of "
                f"processes that divides {batch_size}.")

    def place(self, device: torch.device, requested: str, backend: str) -> torch.device:
        """This rank's device (cuda:LOCAL_RANK or cpu) and the backend for its gradients; checks only."""
        if not self.active:
            return device
        if device.type == "cuda":
            if ":" in requested:
                raise SeqclfError(f"train.device={requested}: under torchrun each rank uses cuda:LOCAL_RANK; "
                                  f"set train.device=cuda (or auto)")
            count = torch.cuda.device_count()
            if self.local_rank >= count:
                raise SeqclfError(f"train.device: local rank {self.local_rank} needs cuda:{self.local_rank} but this "
                                  f"machine has {count} CUDA device(s); start at most {count} processes per node "
                                  f"(--nproc_per_node={count}) or set train.device=cpu")
            device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(device)  # nccl and the CUDA caching allocator work on the current device
        elif device.type != "cpu":
            raise SeqclfError(f"train.device resolved to {device.type}: under torchrun seqclf trains on CUDA "
                              f"(nccl) or the CPU (gloo); set train.device=cpu or cuda")
        if backend == "nccl" and device.type != "cuda":
            raise SeqclfError("train.dist_backend=nccl needs CUDA devices, but this rank trains on the CPU; "
                              "set train.dist_backend=gloo (or auto), or train.device=cuda")
        if backend == "nccl" and not torch.distributed.is_nccl_available():
            raise SeqclfError("train.dist_backend=nccl: this torch build has no NCCL; use train.dist_backend=gloo")
        self.backend = backend if backend != "auto" else ("nccl" if device.type == "cuda" else "gloo")
        return device

    def shard(self, n: int) -> slice:
        """This rank's contiguous share of n items (sizes differ by at most one; some may be empty)."""
        return slice(n * self.rank // self.world_size, n * (self.rank + 1) // self.world_size)

    @contextlib.contextmanager
    def agree(self) -> Iterator[None]:
        """Set-up that may fail on any rank: if it fails on one, it fails on all.

        The body must not call collectives (a rank that failed early would never join them). Rank 0
        raises the first failure (`rank N: ...` when it happened elsewhere); the other ranks raise one
        the CLI does not print. A bug keeps its traceback on the rank where it happened.
        """
        failure: Exception | None = None
        try:
            yield
        except Exception as exc:  # KeyboardInterrupt ends this rank; the others then lose contact
            if not self.active:
                raise
            failure = exc
        if not self.active:
            return
        mine = None if failure is None else (_describe(failure), getattr(failure, "exit_code", 1))
        every: list[Any] = [None] * self.world_size
        try:
            torch.distributed.all_gather_object(every, mine)
        except RuntimeError as exc:
            if failure is None:
                raise LostContact(self.rank, exc) from None
            failure.rank_local = True  # type: ignore[attr-defined]  # nobody else can report it
            raise failure from None  # its own traceback stays on it
        failed = [(rank, found) for rank, found in enumerate(every) if found is not None]
        if not failed:
            return
        first, (message, code) = failed[0]
        if failure is not None and (first == self.rank or not isinstance(failure, SeqclfError)):
            raise failure
        shared = SeqclfError(f"rank {first}: {message}" if first else message)
        shared.exit_code = code
        raise shared

    # ------------------------------------------------------------ collectives (every rank calls them;
    # the cheap ones do nothing in a single process)

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """The model in DistributedDataParallel, over gloo or nccl as placed (rank 0's weights win)."""
        if self.backend == "gloo" and device.type == "cuda":  # forced: the default group has nccl for CUDA
            self.group = torch.distributed.new_group(backend="gloo")
        ids = [device.index] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids, process_group=self.group)

    def decide(self, loss: torch.Tensor, signum: int) -> tuple[torch.Tensor, int]:
        """One step's verdict, the same on every rank: the global batch's mean loss (the mean of the
        ranks' scaled losses) and the signal that stops the run if any rank got one (0: none)."""
        votes = torch.tensor([0.0, signum == signal.SIGINT, signum == signal.SIGTERM],
                             dtype=torch.float64)  # on the CPU: gloo, even when nccl carries the gradients
        if loss.device.type != "cpu":
            # Reading a GPU loss waits for the device's stream, and so for this step's nccl all-reduces: with a
            # dead peer, forever. First meet on the CPU (fails at once when a rank is gone): once every rank is
            # here, every rank has issued this step's all-reduces and the read cannot hang on a missing one.
            torch.distributed.all_reduce(votes)  # the signals, summed
            total = torch.tensor([float(loss.detach())], dtype=torch.float64)
            torch.distributed.all_reduce(total)
            votes[0] = total[0]
        else:
            votes[0] = float(loss.detach())
            torch.distributed.all_reduce(votes)
        stop = signal.SIGTERM if votes[2] else signal.SIGINT if votes[1] else 0
        return votes[0] / self.world_size, int(stop)

    def sum_(self, *tensors: torch.Tensor) -> None:
        """Sum each tensor over the ranks, in place (counts and float64 sums: exact or nearly)."""
        for tensor in tensors if self.active else ():
            torch.distributed.all_reduce(tensor, group=self.group)

    def broadcast_(self, tensors: Any) -> None:
        """Overwrite each tensor with rank 0's, in place."""
        for tensor in tensors if self.active else ():
            torch.distributed.broadcast(tensor, src=0, group=self.group)

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's `obj` on every rank (pickled: plain values, tensors, dataclasses)."""
        if not self.active:
            return obj
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def gather_object(self, obj: Any) -> list[Any] | None:
        """Every rank's `obj` in rank order on rank 0; None elsewhere."""
        every: list[Any] | None = [None] * self.world_size if self.is_main else None
        torch.distributed.gather_object(obj, every, dst=0)
        return every

    def shard_forward(self, ddp: nn.Module, train: Any, idx: torch.Tensor,
                      autocast: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """This rank's contiguous share of the global batch `idx` (B,) of the `train` split, forward.

        Its summed loss is scaled by world_size / B, so DDP's mean of the ranks' gradients is the
        gradient of the mean over the whole batch: what one process computes. Returns (logits (b, C),
        labels (b,), the scaled loss, the unscaled float64 sum for the epoch's metrics).
        """
        mine = idx[self.shard(len(idx))]  # (b,), b = B / world_size, or near it in the last batch
        x, y = train.x.index_select(0, mine), train.y.index_select(0, mine)  # (b, T, F), (b,)
        if len(mine) == 0:  # fewer examples left than ranks: still join the gradient all-reduce, with zeros
            x = train.x.index_select(0, idx[:1])  # (1, T, F)
        with autocast:
            logits = ddp(x)  # (b, num_classes)
            total = F.cross_entropy(logits.float(), y, reduction="sum") if len(mine) else logits.float().sum() * 0.0
        return logits[:len(mine)], y, total * (self.world_size / len(idx)), total.detach().double()

    def split_streams(self, seed: int, state: Any, saved: dict[str, Any] | None) -> None:
        """After the identical set-up of a TrainingState: each rank its own dropout stream (restored
        exactly when the world size is the one saved), and the epoch's saved partial sums on rank 0 only."""
        rank_rng = saved.get("rank_rng") if saved is not None else None
        if rank_rng is not None and len(rank_rng) == self.world_size:
            rng.set_rng_state(rank_rng[self.rank], state.device)
        elif self.rank:
            torch.manual_seed(hash((seed, self.rank, state.epoch, state.cursor.step)))  # ints hash alike everywhere
        if saved is not None and self.rank:
            state.cursor.sums["loss"].zero_()
            state.cursor.sums["correct"].zero_()

    def barrier(self) -> None:
        if self.active:
            torch.distributed.all_reduce(torch.zeros(1))  # a CPU all-reduce: gloo under either backend


# ---------------------------------------------------------------- the environment and the process group


def from_env(environ: Any = None) -> Context:
    """The Context torchrun's environment describes; an inactive one without it."""
    environ = os.environ if environ is None else environ
    if "RANK" not in environ or "WORLD_SIZE" not in environ:
        return Context()
    values = {}
    for key, default in zip(ENV, (None, None, environ["RANK"], environ["WORLD_SIZE"])):
        text = environ.get(key, default)
        try:
            values[key] = int(text)
        except ValueError:
            raise SeqclfError(f"torchrun's environment variable {key}={text!r} is not an integer; "
                              f"start seqclf with torchrun (or unset RANK and WORLD_SIZE)") from None
    rank, world, local_rank, local_world = (values[key] for key in ENV)
    if not 0 <= rank < world or not 0 <= local_rank < local_world:
        raise SeqclfError(f"torchrun's environment is inconsistent (RANK={rank}, WORLD_SIZE={world}, "
                          f"LOCAL_RANK={local_rank}, LOCAL_WORLD_SIZE={local_world}); start seqclf with torchrun")
    return Context(rank, world, local_rank, local_world)


def default_backend() -> str:
    """CPU tensors (coordination, CPU training) over gloo; CUDA tensors over nccl where there is CUDA."""
    if torch.cuda.is_available() and torch.distributed.is_nccl_available():
        return "cpu:gloo,cuda:nccl"
    return "gloo"


@contextlib.contextmanager
def session() -> Iterator[Context]:
    """This process's Context; under torchrun the process group lives exactly as long as the block."""
    ctx = from_env()
    if not ctx.active:
        yield ctx
        return
    if not torch.distributed.is_available():
        raise SeqclfError("torchrun started seqclf, but this torch build has no torch.distributed")
    owned = not torch.distributed.is_initialized()  # a caller's own process group is left to the caller
    if owned:
        try:
            torch.distributed.init_process_group(backend=default_backend(), timeout=TIMEOUT)
        except (ValueError, RuntimeError) as exc:
            first = first_line(exc)
            raise SeqclfError(f"torchrun's environment is set (RANK={ctx.rank}, WORLD_SIZE={ctx.world_size}) but "
                              f"the process group could not start: {first[:300]}. Launch with "
                              f"torchrun --nproc_per_node=N -m seqclf train ...") from None
    try:
        yield ctx
    finally:
        if owned and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def is_peer_failure(exc: BaseException) -> bool:
    """Did a collective fail because another rank went away (rather than a fault here)?

    A network or store error is; a backend (NCCL) error only when its message says a peer is gone.
    """
    gone = tuple(getattr(torch.distributed, name) for name in ("DistNetworkError", "DistStoreError")
                 if hasattr(torch.distributed, name))
    return isinstance(exc, gone) or (isinstance(exc, RuntimeError) and any(s in str(exc) for s in PEER_SIGNS))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, SeqclfError):
        return str(exc)
    return f"{type(exc).__name__}: {exc} (its traceback is above)"
