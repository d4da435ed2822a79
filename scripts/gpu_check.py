"""The checks behind scripts/gpu_check.sh (run that; it finds the Python and refuses without CUDA).

`python scripts/gpu_check.py --device cpu` rehearses the same checks on a CPU (fp16 and nccl are then
skipped): the way to try a change to this file on a machine without a GPU. `--only bf16,parity` runs
the checks whose names contain one of the words.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
BUDGET = 280.0  # seconds for every check together; what is not reached is reported, not run
TOLERANCE = {"fp32": 1e-4, "bf16": 5e-2}  # fused vs cell vs scratch, max |logits difference| (docs/devices.md)
TIMING = {"seconds", "examples_per_s"}
BENCH_ROWS = {  # scripts/bench.sh's standard rows
    "LSTM 10 x 2 (seed-sized)": ["model.hidden_size=10", "model.num_layers=2", "train.batch_size=128"],
    "LSTM 128 x 1": ["model.hidden_size=128", "train.batch_size=128"],
    "GRU 128 x 2 bidirectional": ["model.cell=gru", "model.hidden_size=128", "model.num_layers=2",
                                  "model.bidirectional=true", "train.batch_size=128"],
    "LSTM 256 x 1": ["model.hidden_size=256", "train.batch_size=256"],
}
START = time.monotonic()
results: list[tuple[str, str, float, str]] = []  # (check, PASS/FAIL/SKIP, seconds, detail)


def check(name: str, body: Callable[[], str]) -> None:
    """Run one check; its return value is the detail shown, an exception (or AssertionError) a failure."""
    started = time.monotonic()
    only = sys.argv[sys.argv.index("--only") + 1].split(",") if "--only" in sys.argv else None
    if only and not any(word in name for word in only):
        results.append((name, "SKIP", 0.0, "not selected (--only)"))
        return
    if started - START > BUDGET:
        results.append((name, "SKIP", 0.0, "not reached within the time budget"))
        return
    try:
        detail, verdict = body(), "PASS"
    except Skip as why:
        detail, verdict = str(why), "SKIP"
    except Exception as exc:  # every failure is a row of the table, and the next check still runs
        detail, verdict = f"{type(exc).__name__}: {str(exc).strip()[-300:]}", "FAIL"
    results.append((name, verdict, time.monotonic() - started, detail.replace("\n", " ")))


class Skip(Exception):
    pass


# ---------------------------------------------------------------- data and commands


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">i4").tobytes()
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def generate(root: Path, n_train: int = 12000, n_test: int = 1000) -> Path:
    """Ten classes of 28x28 noise, class k with a bright band of rows at 2k (learnable in an epoch)."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n)
        images = rng.integers(0, 60, (n, 28, 28))
        for k in range(10):
            images[labels == k, 2 * k:2 * k + 4, :] = 250
        write_idx(root / f"{prefix}-images-idx3-ubyte", images)
        write_idx(root / f"{prefix}-labels-idx1-ubyte", labels)
    return root


def seqclf(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> dict[str, Any]:
    """`seqclf ARGS --json`, which must succeed; its JSON object."""
    done = subprocess.run([sys.executable, "-m", "seqclf", *args, "--json"], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})
    assert done.returncode == 0, f"seqclf {' '.join(args[:2])} exited {done.returncode}: {done.stderr[-400:]}"
    return json.loads(done.stdout)


def sets(items: list[str]) -> list[str]:
    return [part for item in items for part in ("--set", item)]


def strict_json(text: str) -> Any:
    def refuse(constant: str) -> None:
        raise AssertionError(f"not strict JSON: {constant}")
    return json.loads(text, parse_constant=refuse)


def metrics(run_dir: Path) -> list[dict[str, Any]]:
    return [strict_json(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def same_weights(a: Path, b: Path) -> bool:
    wa, wb = (torch.load(p, map_location="cpu", weights_only=True)["model"] for p in (a, b))
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


# ---------------------------------------------------------------- the checks


class Checks:
    def __init__(self, work: Path, device: str) -> None:
        self.work, self.device = work, device
        self.data = generate(work / "data")
        self.base = ["data.name=idx", f"data.root={self.data}", "data.val_size=1000", "data.download=false",
                     "model.hidden_size=64", "train.epochs=2", "train.batch_size=64", f"train.device={device}",
                     f"output.dir={work / 'runs'}"]

    def run_dir(self, name: str) -> Path:
        return self.work / "runs" / name

    def train(self, name: str, *extra: str) -> dict[str, Any]:
        return seqclf("train", "--config", "/dev/null",
                      *sets(self.base + ["data.max_train=5000", f"output.name={name}", *extra]))

    def train_then_eval(self) -> str:
        summary = self.train("plain")
        scored = seqclf("eval", str(self.run_dir("plain") / "best.pt"))
        assert scored["accuracy"] == summary["test_accuracy"], (scored["accuracy"], summary["test_accuracy"])
        assert summary["test_accuracy"] > 0.5, f"did not learn: test accuracy {summary['test_accuracy']}"
        return f"test accuracy {summary['test_accuracy']:.4f} = eval's"

    def interrupt_and_resume(self) -> str:
        exact = ["train.deterministic=true", "model.num_layers=2", "train.epochs=3", "train.batch_size=32"]
        self.train("reference", *exact)
        args = ["train", "--config", "/dev/null", *sets(self.base + ["data.max_train=5000", "output.name=interrupted",
                                                                  *exact])]
        proc = subprocess.Popen([sys.executable, "-m", "seqclf", *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        first = self.run_dir("interrupted") / "metrics.jsonl"
        while not first.exists() and proc.poll() is None:
            time.sleep(0.01)
        assert proc.poll() is None, f"the run ended before its first epoch did: {proc.communicate()[1][-300:]}"
        time.sleep(0.4 * metrics(self.run_dir("interrupted"))[0]["seconds"])  # into epoch 2
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, f"exit {proc.returncode} after SIGINT: {err[-300:]}"
        state = torch.load(self.run_dir("interrupted") / "last.pt", map_location="cpu", weights_only=True)["state"]
        where = f"epoch {len(metrics(self.run_dir('interrupted'))) + 1}, step {state['step']}"
        seqclf("train", "--resume", str(self.run_dir("interrupted")))
        a, b = self.run_dir("reference"), self.run_dir("interrupted")
        strip = [[{k: v for k, v in row.items() if k not in TIMING} for row in metrics(d)] for d in (a, b)]
        assert strip[0] == strip[1], f"metrics differ after resuming at {where}"
        assert same_weights(a / "last.pt", b / "last.pt"), f"weights differ after resuming at {where}"
        return f"stopped at {where}; resumed run bitwise equal (train.deterministic=true)"

    def precision(self, precision: str) -> str:
        if precision == "fp16" and self.device != "cuda":
            raise Skip("fp16 runs on CUDA only")
        summary = self.train(precision, f"train.precision={precision}")
        rows = metrics(self.run_dir(precision))
        strict_json((self.run_dir(precision) / "summary.json").read_text())
        for row in rows:
            for key in ("train_loss", "val_loss", "grad_norm", "train_accuracy", "val_accuracy"):
                assert isinstance(row[key], float) and math.isfinite(row[key]), f"{key} = {row[key]}"
        skipped = sum(row["skipped_steps"] for row in rows)
        return f"test accuracy {summary['test_accuracy']:.4f}, {skipped} skipped step(s), strict JSON"

    def parity(self) -> str:
        from seqclf.config import load_config, replace
        from seqclf.model.classifier import SequenceClassifier
        from seqclf.training.devices import autocast, configure

        worst: dict[str, float] = {}
        device = torch.device(self.device)
        x = torch.randn(64, 28, 28, device=device)
        for cell in ("lstm", "gru", "rnn"):
            for precision in ("fp32", "bf16"):
                cfg = load_config(None, [f"model.cell={cell}", "model.hidden_size=128", "model.num_layers=2",
                                         f"train.precision={precision}", f"train.device={self.device}"])
                configure(cfg.train)  # fp32 = IEEE fp32 (train.tf32=false)
                torch.manual_seed(0)
                fused = SequenceClassifier(cfg.model, 28, 10).to(device)
                logits = {}
                for impl in ("fused", "cell", "scratch"):
                    model = SequenceClassifier(replace(cfg, "model.impl", impl).model, 28, 10)
                    model.load_state_dict(fused.state_dict())
                    with torch.no_grad(), autocast(cfg.train, device):
                        logits[impl] = model.to(device)(x).float()
                diff = max((logits[i] - logits["fused"]).abs().max().item() for i in ("cell", "scratch"))
                worst[precision] = max(worst.get(precision, 0.0), diff)
        failed = {p: d for p, d in worst.items() if d > TOLERANCE[p]}
        assert not failed, f"max |difference| {failed} over the tolerance {TOLERANCE}"
        return ", ".join(f"{p}: max |diff| {d:.1e} (<= {TOLERANCE[p]:g})" for p, d in worst.items())

    def torchrun(self) -> str:
        gpus = torch.cuda.device_count() if self.device == "cuda" else 0
        if gpus < 2:
            raise Skip(f"{gpus} GPU(s): nccl takes one GPU per rank (it refuses two ranks on one device, and "
                       f"seqclf places rank r on cuda:r); the CPU tests cover torchrun over gloo")
        world = max(n for n in range(2, min(gpus, 8) + 1) if 64 % n == 0)
        one = self.train("single")
        done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                               f"--nproc_per_node={world}", "-m", "seqclf", "train", "--config", "/dev/null", "--json",
                               *sets(self.base + ["data.max_train=5000", "output.name=ddp",
                                                  "train.dist_backend=nccl"])],
                              capture_output=True, text=True, timeout=150)
        assert done.returncode == 0, f"torchrun exited {done.returncode}: {done.stderr[-400:]}"
        many = json.loads(done.stdout)
        gap = abs(many["test_accuracy"] - one["test_accuracy"])
        assert gap < 0.05, f"{world} ranks: test accuracy {many['test_accuracy']} vs one process {one['test_accuracy']}"
        return (f"{world} ranks over nccl: test accuracy {many['test_accuracy']:.4f} "
                f"(one process {one['test_accuracy']:.4f}); " + self.dead_peer())

    def dead_peer(self) -> str:
        """A rank killed mid-run: the other must end with 'lost contact' (not hang in a CUDA sync)."""
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        args = ["-m", "seqclf", "train", "--config", "/dev/null",
                *sets(self.base + ["output.name=dead", "train.epochs=1000", "train.dist_backend=nccl"])]
        procs = [subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env={**os.environ, "RANK": str(r), "WORLD_SIZE": "2", "LOCAL_RANK": str(r),
                                       "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
                 for r in range(2)]
        first = self.run_dir("dead") / "metrics.jsonl"
        deadline = time.monotonic() + 90
        while not first.exists() and all(p.poll() is None for p in procs) and time.monotonic() < deadline:
            time.sleep(0.05)
        procs[1].kill()
        try:
            _, err = procs[0].communicate(timeout=60)
        except subprocess.TimeoutExpired:
            procs[0].kill()
            raise AssertionError("rank 0 still running 60 s after rank 1 was killed "
                                 "(blocked in a CUDA sync?)") from None
        procs[1].communicate()
        status = json.loads((self.run_dir("dead") / "summary.json").read_text())["status"]
        assert procs[0].returncode == 1 and "lost contact" in err, f"rank 0: exit {procs[0].returncode}: {err[-300:]}"
        assert status == "failed", f"summary.json status {status}"
        return "a killed rank ends the other with 'lost contact'"

    def bench(self) -> str:
        lines = ["| model | batch | train ex/s | eval ex/s | conventional ex/s | speedup | GFLOP/s | "
                 "matmul GFLOP/s | of matmul |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        over = []
        rehearsal = self.device == "cpu"  # a rehearsal on a CPU: one row, few steps
        for name, items in list(BENCH_ROWS.items())[:1 if rehearsal else None]:
            r = seqclf("bench", "--config", str(ROOT / "configs" / "lstm.yaml"), "--baseline",
                       "--steps", "10" if rehearsal else "60",
                       *sets([f"data.root={self.data}", "data.name=idx", "data.download=false",
                              f"train.device={self.device}", *items]), timeout=120)
            lines.append(f"| {name} | {r['batch_size']} | {r['train_examples_per_s']:,.0f} | "
                         f"{r['eval_examples_per_s']:,.0f} | {r['baseline_train_examples_per_s']:,.0f} | "
                         f"{r['speedup']:.1f}x | {r['achieved_gflops']:.1f} | {r['peak_gflops']:,.0f} | "
                         f"{r['efficiency']:.0%} |")
            if not 0 < r["efficiency"] <= 1:
                over.append(f"{name}: efficiency {r['efficiency']:.2f}")
        lines.append(f"\n{r['device']} ({torch.cuda.get_device_name() if self.device == 'cuda' else 'CPU'}), "
                     f"{r['precision']}, torch {torch.__version__}; generated 28x28 IDX data")
        self.bench_table = "\n".join(lines)
        assert not over, f"matmul peak below the achieved rate: {over}"
        return f"{len(lines) - 3} row(s) (table below)"


def main() -> int:
    device = sys.argv[sys.argv.index("--device") + 1] if "--device" in sys.argv else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device visible to torch; run it on a machine with an NVIDIA GPU", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="seqclf-gpu-check-") as work:
        checks = Checks(Path(work), device)
        check("train -> eval", checks.train_then_eval)
        check("interrupt + resume", checks.interrupt_and_resume)
        check("fp16 run", lambda: checks.precision("fp16"))
        check("bf16 run", lambda: checks.precision("bf16"))
        check("fused/cell/scratch parity", checks.parity)
        check("torchrun (nccl)", checks.torchrun)
        check("seqclf bench", checks.bench)
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU (rehearsal)"
    print(f"\nseqclf GPU check on {name}, torch {torch.__version__}, {time.monotonic() - START:.0f} s\n")
    print("| check | result | seconds | detail |\n| --- | --- | ---: | --- |")
    for row in results:
        print(f"| {row[0]} | {row[1]} | {row[2]:.1f} | {row[3]} |")
    if getattr(checks, "bench_table", None):
        print("\n" + checks.bench_table)
    return 1 if any(verdict == "FAIL" for _, verdict, _, _ in results) else 0


if __name__ == "__main__":
    sys.exit(main())
