"""torchrun: 2 CPU processes (gloo) train exactly what one process trains; failures and signals.

Each launch starts real processes (torchrun, or the same environment torchrun gives its ranks,
set by hand where a test must reach one rank alone): the tests marked `process`.
Every launch has a timeout: a hang fails the test instead of stalling CI.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import make_dataset, posix_only, process, seqclf_env, set_args

from seqclf.config import load_config
from seqclf.errors import SeqclfError
from seqclf.store import checkpoint
from seqclf.store import rundir as runs
from seqclf.training.distributed import Context, from_env, is_peer_failure
from seqclf.training.start import resume, train

LAUNCH_TIMEOUT = 180  # seconds; generous for a loaded 2-core machine, short of a hang


@pytest.fixture(scope="module")
def overrides(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """41 training examples in batches of 20: the last global batch holds 1 example, so one of the
    two ranks has an empty share; validation (99) splits 49 / 50 between the ranks."""
    data = make_dataset(tmp_path_factory.mktemp("distributed"), n_train=140, n_test=60)
    return ["data.name=idx", f"data.root={data}", "data.val_size=99", "model.hidden_size=8",
            "train.epochs=2", "train.batch_size=20", "train.device=cpu", "train.num_threads=1"]


def single_process(items: list[str], out_dir: Path) -> tuple[dict, Path]:
    """The reference: the same config trained in this process."""
    summary = train(load_config(None, [*items, f"output.dir={out_dir}"]))
    return summary, Path(summary["run_dir"])


def max_weight_difference(a: Path, b: Path) -> float:
    wa, wb = checkpoint.load(a)["model"], checkpoint.load(b)["model"]
    assert wa.keys() == wb.keys()  # no `module.` prefix from DistributedDataParallel
    return max(float((wa[k] - wb[k]).abs().max()) for k in wa)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """`python -m torch.distributed.run`: the ranks it starts with sys.executable are `python` too. Its agent
    leaves a torchelastic_* folder in TMPDIR: the test's own folder, not /tmp."""
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "seqclf", "train", *args], capture_output=True, text=True,
                          env={**seqclf_env(), "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path)},
                          timeout=LAUNCH_TIMEOUT)


def start_ranks(args_by_rank: list[list[str]]) -> list[subprocess.Popen]:
    """The ranks torchrun would start (its environment, set by hand), so that a test can reach one alone."""
    port, world = free_port(), len(args_by_rank)
    procs = []
    for rank, args in enumerate(args_by_rank):
        env = {**seqclf_env(), "RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
               "LOCAL_WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
               "OMP_NUM_THREADS": "1"}
        procs.append(subprocess.Popen([sys.executable, "-m", "seqclf", "train", *args], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return procs


def finish(procs: list[subprocess.Popen]) -> list[tuple[int, str, str]]:
    results = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=LAUNCH_TIMEOUT)
        results.append((proc.returncode, stdout, stderr))
    return results


def wait_for(path: Path, procs: list[subprocess.Popen]) -> None:
    deadline = time.monotonic() + LAUNCH_TIMEOUT
    while not path.exists():
        assert all(p.poll() is None for p in procs), finish(procs)
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


# ---------------------------------------------------------------- the contract, through torchrun


@process
def test_torchrun_two_ranks_train_what_one_process_trains(overrides: list[str], tmp_path: Path) -> None:
    done = torchrun(tmp_path, "--config", "/dev/null", *set_args(overrides),
                    "--set", f"output.dir={tmp_path / 'ddp'}", "--json")
    assert done.returncode == 0, done.stderr
    [line] = done.stdout.splitlines()  # only rank 0 prints, its JSON alone on stdout
    summary = json.loads(line)
    assert done.stderr.count("epoch 1/2 ") == 1 and done.stderr.count("epoch 2/2 ") == 1, done.stderr
    assert "x 2 ranks (gloo)" in done.stderr
    [run_dir] = (tmp_path / "ddp").iterdir()  # exactly one run directory
    assert Path(summary["run_dir"]) == run_dir and summary["status"] == "finished"
    history = runs.RunDir(run_dir).read_metrics()
    assert [row["epoch"] for row in history] == [1, 2]

    reference, single_dir = single_process(overrides, tmp_path / "single")
    assert max_weight_difference(run_dir / "last.pt", single_dir / "last.pt") < 1e-5
    assert summary["test_accuracy"] == reference["test_accuracy"]
    assert summary["test_loss"] == pytest.approx(reference["test_loss"], abs=1e-5)
    for ours, theirs in zip(history, runs.RunDir(single_dir).read_metrics()):
        assert ours["val_accuracy"] == theirs["val_accuracy"] and ours["train_accuracy"] == theirs["train_accuracy"]
        assert ours["train_loss"] == pytest.approx(theirs["train_loss"], abs=1e-5)
        assert ours["val_loss"] == pytest.approx(theirs["val_loss"], abs=1e-5)
        assert ours["grad_norm"] == pytest.approx(theirs["grad_norm"], rel=1e-4)


# ---------------------------------------------------------------- one rank alone: its signal, its failure


@process
@posix_only
def test_a_signal_to_one_rank_stops_both_and_the_run_resumes_in_one_process(overrides: list[str],
                                                                            tmp_path: Path) -> None:
    run_dir = tmp_path / "ddp" / "long"
    args = ["--config", "/dev/null", *set_args(overrides), "--set", "train.epochs=100000",
            "--set", f"output.dir={run_dir.parent}", "--set", "output.name=long"]
    procs = start_ranks([args, args])
    wait_for(run_dir / "metrics.jsonl", procs)  # an epoch is done: the loop's handlers are in place
    procs[1].send_signal(signal.SIGTERM)  # rank 1 alone
    (code0, out0, err0), (code1, out1, err1) = finish(procs)
    assert (code0, code1) == (143, 143), (err0, err1)
    assert re.search(r"SIGTERM: stopped (at|after) epoch", err0) and "Traceback" not in err0  # mid-epoch or at its end
    assert (out1, err1) == ("", "")  # rank 1 stays silent: rank 0 reports
    assert runs.RunDir(run_dir).read_summary()["status"] == "interrupted"
    saved = checkpoint.load(run_dir / "last.pt")
    assert len(saved["state"]["rank_rng"]) == 2

    # The DDP checkpoint continues in a single process exactly as an uninterrupted single process trains.
    epochs = saved["epoch"] + 1
    resumed = resume(run_dir, [f"train.epochs={epochs}"])
    reference, single_dir = single_process([*overrides, f"train.epochs={epochs}"], tmp_path / "single")
    assert resumed["status"] == "finished" and resumed["test_accuracy"] == reference["test_accuracy"]
    assert max_weight_difference(run_dir / "last.pt", single_dir / "last.pt") < 1e-5
    interrupted_epoch = runs.RunDir(run_dir).read_metrics()[epochs - 1]  # its sums came from both ranks, then one
    single_epoch = runs.RunDir(single_dir).read_metrics()[epochs - 1]
    assert interrupted_epoch["train_loss"] == pytest.approx(single_epoch["train_loss"], abs=1e-5)


@process
def test_a_failure_on_one_rank_ends_both_reported_once_by_rank_0(overrides: list[str], tmp_path: Path) -> None:
    args = ["--config", "/dev/null", *set_args(overrides), "--set", f"output.dir={tmp_path / 'runs'}"]
    missing = tmp_path / "missing"
    procs = start_ranks([args, [*args, "--set", f"data.root={missing}"]])  # only rank 1 lacks its data
    (code0, out0, err0), (code1, out1, err1) = finish(procs)
    assert (code0, code1) == (2, 2), (err0, err1)
    assert err0.startswith("error: rank 1: ") and str(missing) in err0 and "Traceback" not in err0
    assert (out1, err1) == ("", "")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())  # no run directory


@process
@posix_only
def test_a_rank_that_dies_ends_the_others_with_a_message(overrides: list[str], tmp_path: Path) -> None:
    run_dir = tmp_path / "long"
    args = ["--config", "/dev/null", *set_args(overrides), "--set", "train.epochs=100000",
            "--set", f"output.dir={tmp_path}", "--set", "output.name=long"]
    procs = start_ranks([args, args])
    wait_for(run_dir / "metrics.jsonl", procs)
    procs[1].kill()  # SIGKILL: no handler, no goodbye
    (code0, _, err0), _ = finish(procs)
    assert code0 == 1, err0
    assert "rank 0: lost contact with the other ranks" in err0 and "Traceback" not in err0
    assert runs.RunDir(run_dir).read_summary()["status"] == "failed"
    assert "state" in checkpoint.load(run_dir / "last.pt")  # the last finished epoch, intact


# ---------------------------------------------------------------- the pieces


@pytest.mark.parametrize("world", [1, 2, 3, 8])
def test_shards_cover_every_item_once_in_order(world: int) -> None:
    for n in range(0, 30):
        shares = [Context(rank, world).shard(n) for rank in range(world)]
        covered = [i for share in shares for i in range(n)[share]]
        assert covered == list(range(n))
        sizes = [len(range(n)[share]) for share in shares]
        assert max(sizes) - min(sizes) <= 1


def test_the_environment_decides_the_world() -> None:
    assert not from_env({}).active
    ctx = from_env({"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4"})
    assert (ctx.rank, ctx.world_size, ctx.local_rank, ctx.local_world_size, ctx.is_main) == (3, 8, 1, 4, False)
    assert not from_env({"RANK": "0", "WORLD_SIZE": "1"}).active  # torchrun with one process: a plain run
    for bad in ({"RANK": "x", "WORLD_SIZE": "2"}, {"RANK": "2", "WORLD_SIZE": "2"}):
        with pytest.raises(SeqclfError, match="torchrun"):
            from_env(bad)
    # a batch size the ranks cannot share: train and resume check it inside dist.agree(), so every rank stops and
    # rank 0 alone reports it (the path of test_a_failure_on_one_rank_ends_both_reported_once_by_rank_0)
    with pytest.raises(SeqclfError, match="train.batch_size=10 cannot be split between the 4 ranks") as refused:
        Context(0, 4).check_batch_size(10)
    assert refused.value.exit_code == 2 and "train.batch_size=8" in str(refused.value)
    Context(0, 4).check_batch_size(12)
    with pytest.raises(SeqclfError, match="train.dist_backend=nccl needs CUDA"):
        Context(0, 2).place(torch.device("cpu"), "cpu", "nccl")
    assert Context(0, 2).place(torch.device("cpu"), "auto", "auto") == torch.device("cpu")


@pytest.mark.parametrize("torchrun_started", [True, False])
def test_a_rank_that_shares_rank_0s_failure_waits_only_where_torchrun_would_end_rank_0(
        torchrun_started: bool, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """Rank 1 stays silent; under torchrun's agent it waits (the agent ends every rank once one exits, and rank 0
    must print first); ranks started otherwise end at once (they used to wait 2 s for nothing)."""
    import typer

    from seqclf.cli.common import reported
    from seqclf.console import Output
    from seqclf.training import ranks

    waits: list[float] = []
    monkeypatch.setattr(ranks.time, "sleep", waits.append)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    if torchrun_started:
        monkeypatch.setenv("TORCHELASTIC_RUN_ID", "none")
    else:
        monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    with pytest.raises(typer.Exit) as ended:
        with reported(Output()):
            raise SeqclfError("rank 1: data.root: no such folder")
    assert ended.value.exit_code == 2 and capsys.readouterr().err == ""  # rank 0 reports it
    assert waits == ([ranks.LINGER_SECONDS] if torchrun_started else [])


@pytest.mark.parametrize("error, peer", [
    (RuntimeError("[../third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection closed by peer [127.0.0.1]:4242"),
     True),
    (torch.distributed.DistBackendError("NCCL error in: ProcessGroupNCCL.cpp:3356, remote process exited or there "
                                        "was a network error, NCCL version 2.27.3\nncclRemoteError: A call failed "
                                        "possibly due to a network error or a remote process exiting prematurely."),
     True),
    (torch.distributed.DistNetworkError("failed to recv, got 0 bytes"), True),
    (RuntimeError("[Rank 0] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=9, OpType=ALLREDUCE) "
                  "ran for 600000 milliseconds before timing out."), True),
    # this rank's own faults, NCCL's included: reported as its own, with the traceback
    (torch.distributed.DistBackendError("NCCL error in: ProcessGroupNCCL.cpp:1970, unhandled cuda error (run with "
                                        "NCCL_DEBUG=INFO for details), NCCL version 2.27.3\nncclUnhandledCudaError: "
                                        "Call to CUDA function failed."), False),
    (torch.distributed.DistBackendError("NCCL error in: ProcessGroupNCCL.cpp:1970, invalid usage (run with "
                                        "NCCL_DEBUG=WARN for details)"), False),
    (RuntimeError("CUDA error: an illegal memory access was encountered"), False),
    (ValueError("Connection closed by peer"), False),  # not a collective's error type
])
def test_only_a_peer_that_went_away_counts_as_a_peer_failure(error: Exception, peer: bool) -> None:
    assert is_peer_failure(error) is peer
