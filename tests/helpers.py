"""Helpers the tests share (`from helpers import ...`): tiny IDX datasets, CLI calls, runs and checkpoints.

Torch is imported inside the functions that use it: conftest.py imports this module, and so does the
process that only starts the pytest-xdist workers.
"""

from __future__ import annotations

import contextlib
import gzip
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from seqclf.config import load_config, to_yaml
from seqclf.store import rundir as runs
from seqclf.store.files import write_json, write_text

if TYPE_CHECKING:
    import torch

ROOT = Path(__file__).resolve().parents[1]  # the repository
FASHION = Path("/usr/share/datasets/fashion-mnist")
FILES = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
         "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}


def write_idx(path: Path, array: np.ndarray | torch.Tensor) -> Path:
    """Write `array` as a valid IDX file of unsigned bytes (magic 0x000008<ndim>); gzip if path ends in .gz."""
    path = Path(path)
    data = np.asarray(array.numpy() if hasattr(array, "numpy") else array)  # a torch.Tensor or an array
    if data.size and (data.min() < 0 or data.max() > 255):
        raise ValueError("IDX unsigned-byte data must lie in 0..255")
    payload = bytes([0, 0, 0x08, data.ndim]) + np.asarray(data.shape, dtype=">i4").tobytes()
    payload += data.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(payload, compresslevel=1) if path.suffix == ".gz" else payload)
    return path


def set_args(items: list[str]) -> list[str]:
    """["a=1", "b=2"] -> ["--set", "a=1", "--set", "b=2"]."""
    return [part for item in items for part in ("--set", item)]


def cli_json(*args: str) -> dict:
    """Run `seqclf ARGS --json` in-process; it must succeed and print exactly one JSON object."""
    import json

    from typer.testing import CliRunner

    from seqclf.cli.app import app

    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def fake_run(folder: Path, name: str, overrides: list[str], summary: dict | None = None,
             history: list[dict] | None = None) -> Path:
    """A run directory as train writes it: config.yaml, and summary.json / metrics.jsonl when given."""
    run_dir = folder / name
    run_dir.mkdir(parents=True)
    write_text(run_dir / runs.CONFIG, to_yaml(load_config(None, overrides)))
    if summary is not None:
        write_json(run_dir / runs.SUMMARY, {"epochs": 3, "parameters": 1000, "seconds": 10.0, "val_accuracy": 0.5,
                                            "test_accuracy": 0.5, "status": "finished", **summary})
    if history is not None:
        runs.RunDir(run_dir).write_metrics(history)
    return run_dir


def epoch(n: int, val_accuracy: float, seconds: float = 2.0) -> dict:
    return {"epoch": n, "train_loss": 1.0 / n, "train_accuracy": 0.5, "val_loss": 1.2 / n,
            "val_accuracy": val_accuracy, "lr": 1e-3, "grad_norm": 1.0, "clipped_fraction": 0.0,
            "seconds": seconds, "examples_per_s": 100.0}


class Hang(BaseException):
    """A call ran past its time limit (a BaseException, so no `except Exception` in seqclf hides it)."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Fail with Hang when the block runs longer than `seconds`: a guard against hangs, not a timing test.

    It needs SIGALRM; on Windows, which has none, the block runs unguarded.
    """
    if not hasattr(signal, "setitimer"):
        yield
        return

    def expired(signum: int, frame: object) -> None:
        raise Hang(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def changed_checkpoint(source: str | Path, target: Path, change: Callable[[dict], None]) -> str:
    """A copy of checkpoint `source` with `change(payload)` applied, saved at `target` as seqclf saves one."""
    import torch

    from seqclf.store import checkpoint

    payload = torch.load(source, weights_only=True)
    change(payload)
    checkpoint.save(target, {k: v for k, v in payload.items() if k not in ("format", "version")})
    return str(target)


def _images(labels: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """(N, size, size) uint8: class k has a bright bar over row band k and a bright stripe down column band k.

    The stripe shows in every row and the bar in every column, so the last step an RNN reads
    (rows or columns view) already says the class, whatever the noise.
    """
    n = len(labels)
    band = max(size // 10, 1)
    images = rng.integers(0, 40, size=(n, size, size))  # mild uniform noise
    for k in range(10):
        chosen = labels == k
        lo = (k * size) // 10
        images[chosen, lo:lo + band, :] = 255 - rng.integers(0, 40, size=(int(chosen.sum()), band, size))
        images[chosen, :, lo:lo + band] = np.maximum(images[chosen, :, lo:lo + band], 220)
    return images.astype(np.uint8)


def make_dataset(root: Path, n_train: int = 600, n_test: int = 200, layout: str = "flat", gz: bool = False,
                 name: str = "MNIST", size: int = 28, seed: int = 0) -> Path:
    """Write the four IDX files of a tiny 10-class dataset under root; deterministic from seed.

    layout "flat": ROOT/<file>[.gz]; "torchvision": ROOT/<name>/raw/<file>[.gz]. Labels are balanced and shuffled.
    """
    if layout not in ("flat", "torchvision"):
        raise ValueError(f"layout must be flat or torchvision, got {layout!r}")
    root = Path(root)
    folder = root if layout == "flat" else root / name / "raw"
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        labels = rng.permutation(np.arange(n) % 10)
        arrays[f"{split}_images"] = _images(labels, size, rng)
        arrays[f"{split}_labels"] = labels.astype(np.uint8)
    for key, filename in FILES.items():
        write_idx(folder / (filename + (".gz" if gz else "")), arrays[key])
    return root


def tiny_args(data_root: Path, out_dir: Path) -> list[str]:
    """`--set` items for a run on make_dataset's data that takes a second or two on CPU."""
    return ["data.name=idx", f"data.root={data_root}", "data.val_size=100", "model.hidden_size=16",
            "train.epochs=2", "train.batch_size=32", "train.device=cpu", "train.num_threads=1",
            f"output.dir={out_dir}"]  # one thread: two on a shared 2-core machine only add barrier waits


def train_tiny(root: Path, out: Path, *extra: str) -> Path:
    """Train a tiny model on the dataset at root for one or two epochs; returns its best.pt."""
    from seqclf.config import load_config
    from seqclf.training.start import train

    overrides = [*tiny_args(root, out), *extra]
    return Path(train(load_config(None, overrides))["checkpoint"])


def random_checkpoint(path: Path, *overrides: str, seed: int = 0, size: int = 28) -> Path:
    """A best.pt of a randomly initialised model for data of size x size images and 10 classes, saved through
    the public checkpoint API: for tests of what reads checkpoints (export, predict), which need no training."""
    import torch

    from seqclf.data.datasets import class_names
    from seqclf.data.views import view_shape
    from seqclf.model.classifier import SequenceClassifier
    from seqclf.store import checkpoint

    cfg = load_config(None, ["data.name=idx", "model.hidden_size=16", *overrides])
    seq_len, input_size = view_shape(cfg.data.sequence, size, size)  # (T, F)
    permutation = torch.randperm(size * size, generator=torch.Generator().manual_seed(seed)) \
        if cfg.data.sequence == "permuted_pixels" else None
    meta = checkpoint.DataMeta(0.13, 0.31, permutation, input_size, seq_len, 10, size, size,
                               tuple(class_names("idx", 10)))
    torch.manual_seed(seed)
    model = SequenceClassifier(cfg.model, input_size, 10)
    with torch.no_grad():  # larger than torch's init: logits far from uniform, so a mismatch shows in probabilities
        for parameter in model.parameters():
            parameter.mul_(3)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.save(path, checkpoint.pack(cfg, meta, {"model": model.state_dict(), "epoch": 1, "history": []},
                                          with_state=False))
    return path


# ---------------------------------------------------------------- real processes

process = pytest.mark.process  # the tests that start real seqclf processes (pyproject.toml's markers)
posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and processes (SIGKILL, a signal to "
                                                                "a process, bash scripts)")
SIGKILL = getattr(signal, "SIGKILL", 9)  # Windows has none; the tests that send it are skipped there


def seqclf_env() -> dict[str, str]:
    """This environment, with the checkout first on PYTHONPATH: a script run from tests/ imports this seqclf."""
    import os

    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


def seqclf_at_write(at_fsync: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m seqclf ARGS` in a real process that gets a signal at a chosen write (faultwrap.py:
    "N:SIGNAL:NAME", after the Nth fsync of a file named NAME, before its rename)."""
    wrapper = Path(__file__).with_name("faultwrap.py")
    return subprocess.run([sys.executable, str(wrapper), at_fsync, "-m", "seqclf", *args], env=seqclf_env(),
                          capture_output=True, text=True, timeout=timeout)


# ---------------------------------------------------------------- scripts whose seqclf runs in this process

SHIM = """#!/usr/bin/env bash
# `seqclf ARGS` for a script under test: helpers.run_script runs the command in the test's own process;
# this carries the folder and the arguments there, and the output and the exit status back.
set -u
box={box}
id=$$
mkfifo "$box/$id.done"
printf '%s\\0' "$PWD" "$@" > "$box/$id.part" && mv "$box/$id.part" "$box/$id.args"
read -r code < "$box/$id.done"
cat "$box/$id.out"
cat "$box/$id.err" >&2
rm -f "$box/$id.done" "$box/$id.out" "$box/$id.err"
exit "$code"
"""


def run_script(command: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None,
               timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `command` (a bash script, a README block) with a `seqclf` first on its PATH that runs each of its
    commands here, in this process, one at a time: the script is real, seqclf costs no interpreter start.
    `command` may be `["seqclf", ...]` itself: a command whose output must be a real file (tune's workers
    write to it)."""
    import os
    import shlex
    import shutil
    import tempfile
    import time

    box = Path(tempfile.mkdtemp(prefix="seqclf-script-"))
    shim = box / "bin" / "seqclf"
    shim.parent.mkdir()
    shim.write_text(SHIM.format(box=shlex.quote(str(box))))
    shim.chmod(0o755)
    env = dict(os.environ if env is None else env)
    env["PATH"] = os.pathsep.join([str(shim.parent), env.get("PATH", os.defpath)])
    deadline = time.monotonic() + timeout
    try:
        with open(box / "stdout", "w+") as stdout, open(box / "stderr", "w+") as stderr:
            proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=stdout, stderr=stderr, text=True)
            try:
                while proc.poll() is None:
                    if time.monotonic() > deadline:
                        raise subprocess.TimeoutExpired(command, timeout)
                    for request in sorted(box.glob("*.args")):
                        _serve(box, request)
                    time.sleep(0.01)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            stdout.seek(0)
            stderr.seek(0)
            return subprocess.CompletedProcess(command, proc.returncode, stdout.read(), stderr.read())
    finally:
        shutil.rmtree(box, ignore_errors=True)


def _serve(box: Path, request: Path) -> None:
    """Run one shim's `seqclf ARGS` in its folder, its stdout and stderr (file descriptors 1 and 2 too, for
    the processes it starts, which import this checkout) in files the shim prints; answer its exit status."""
    import os
    import traceback

    from seqclf.cli.app import app

    cwd, *args = request.read_bytes().decode().split("\0")[:-1]
    request.unlink()
    ident = request.name[:-len(".args")]
    folder, path = os.getcwd(), os.environ.get("PYTHONPATH")
    saved = sys.stdout, sys.stderr, os.dup(1), os.dup(2)
    with open(box / f"{ident}.out", "w") as out, open(box / f"{ident}.err", "w") as err:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        sys.stdout, sys.stderr = out, err
        try:
            os.chdir(cwd)
            os.environ["PYTHONPATH"] = seqclf_env()["PYTHONPATH"]
            app(args, prog_name="seqclf")
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:  # noqa: BLE001 - reported as a process would report it
            traceback.print_exc(file=err)
            code = 1
        finally:
            os.chdir(folder)
            if path is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = path
            out.flush()
            err.flush()
            sys.stdout, sys.stderr = saved[0], saved[1]
            os.dup2(saved[2], 1)
            os.dup2(saved[3], 2)
            os.close(saved[2])
            os.close(saved[3])
    with open(box / f"{ident}.done", "w") as done:
        done.write(f"{code}\n")
