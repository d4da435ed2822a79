"""Device differences a CPU can show (issue 16): no float64 on MPS, CUDA RNG states on fewer GPUs, the fp16
loss scale in last.pt, skipped fp16 steps and strict JSON, bf16 for every implementation, TF32 and
determinism switches, the resume precision rule, out of memory, and scripts/gpu_check.sh without CUDA."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import ROOT, posix_only, process
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from seqclf.config import config_from_dict, keys_where, load_config, to_yaml
from seqclf.console import Output
from seqclf.errors import SeqclfError, TrainingError
from seqclf.model.classifier import SequenceClassifier
from seqclf.store import checkpoint
from seqclf.store import rundir as runs
from seqclf.store.files import write_json
from seqclf.store.runlog import RunLog
from seqclf.training import devices, rng
from seqclf.training.devices import autocast, dtype_policy
from seqclf.training.prepare import prepare
from seqclf.training.scoring import score
from seqclf.training.signals import GracefulStop
from seqclf.training.start import new_run, resume, train
from seqclf.training.state import TrainingState, zero_sums
from seqclf.training.trainer import Trainer


class Float64Conversions(TorchDispatchMode):
    """Records every op that turns non-float64 tensors into a float64 one: on MPS each would raise."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        result = func(*args, **(kwargs or {}))
        inputs = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        outputs = [t for t in tree_flatten(result)[0] if isinstance(t, torch.Tensor)]
        if any(t.dtype == torch.float64 for t in outputs) and any(t.dtype != torch.float64 for t in inputs):
            self.found.append(str(func))
        return result


def steps_under(policy: devices.DtypePolicy, overrides: list[str], tmp_path: Path,
                detector: Float64Conversions) -> tuple[dict[str, float], dict]:
    """An epoch's first 8 real training steps and a validation score with `policy` forced on the CPU."""
    cfg = load_config(None, overrides + ["train.grad_clip=0.5"])
    ready = prepare(cfg)
    run = new_run(ready.cfg, RunLog(tmp_path, ready.cfg), ready.data, ready.device)
    run.state.policy = policy
    run.state.begin_epoch(len(ready.data.train))
    with Output(quiet=True).progress(8, "steps") as bar, detector:
        Trainer(run, Output(quiet=True), GracefulStop()).run_steps(bar, 8)
        scored = score(run.state.model, ready.data.val, ready.data.num_classes, policy=policy)
    return {name: float(value) for name, value in run.state.cursor.sums.items()}, scored


def test_a_device_without_float64_gets_exact_sums_from_the_host(tiny_overrides: list[str], tmp_path: Path) -> None:
    # what MPS needs: its sums are on the host (even where the device is not a CPU) ...
    assert {t.device.type for t in zero_sums(torch.device("mps")).values()} == {"cpu"}
    # ... and no step or score converts anything to float64 on the device
    without, on_cpu = Float64Conversions(), Float64Conversions()
    sums, scored = steps_under(dtype_policy("mps"), tiny_overrides, tmp_path / "a", without)
    assert without.found == []
    expected, expected_score = steps_under(dtype_policy("cpu"), tiny_overrides, tmp_path / "b", on_cpu)
    assert on_cpu.found  # the detector sees the CPU policy's float64 sums on the device
    assert {k: sums[k] for k in ("correct", "clipped", "skipped", "steps")} == \
        {k: expected[k] for k in ("correct", "clipped", "skipped", "steps")}
    assert sums["loss"] == pytest.approx(expected["loss"], rel=1e-6)
    assert sums["grad_norm"] == pytest.approx(expected["grad_norm"], rel=1e-6)
    assert scored["confusion_matrix"] == expected_score["confusion_matrix"]
    assert scored["loss"] == pytest.approx(expected_score["loss"], rel=1e-6)


def test_bench_synchronizes_mps(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(torch.mps, "synchronize", lambda: calls.append("mps"))
    devices.synchronize(torch.device("mps"))
    devices.synchronize(torch.device("cpu"))
    assert calls == ["mps"]


def test_a_run_whose_steps_all_overflow_writes_finite_strict_metrics(tiny_overrides: list[str],
                                                                     tmp_path: Path) -> None:
    # fp16 runs on CUDA only; a CPU GradScaler with an infinite scale overflows every step the same way
    cfg = load_config(None, tiny_overrides + ["train.epochs=1"])
    ready = prepare(cfg)
    (tmp_path / "run").mkdir()
    run = new_run(ready.cfg, RunLog(tmp_path / "run", ready.cfg), ready.data, ready.device)
    run.state.scaler = torch.amp.GradScaler("cpu", init_scale=float("inf"))
    assert Trainer(run, Output(quiet=True), GracefulStop()).fit()["status"] == "finished"
    row = strict((tmp_path / "run" / runs.METRICS).read_text())
    assert row["skipped_steps"] == 16 and row["grad_norm"] == 0.0 and row["clipped_fraction"] == 0.0  # 500 / 32
    assert checkpoint.load(tmp_path / "run" / runs.LAST)["state"]["scaler"]["scale"] == float("inf")


def strict(text: str) -> object:
    def refuse(constant: str) -> None:
        raise ValueError(f"not JSON: {constant}")
    return json.loads(text, parse_constant=refuse)


def test_every_json_file_is_strict_even_with_non_finite_values(tmp_path: Path) -> None:
    row = {"epoch": 1, "grad_norm": float("inf"), "train_loss": float("nan"), "lr": [0.1, float("-inf")]}
    runs.RunDir(tmp_path).write_metrics([row])
    assert strict((tmp_path / runs.METRICS).read_text()) == {"epoch": 1, "grad_norm": None, "train_loss": None,
                                                              "lr": [0.1, None]}
    write_json(tmp_path / "summary.json", {"test_loss": float("nan"), "nested": {"x": float("inf")}})
    assert strict((tmp_path / "summary.json").read_text()) == {"test_loss": None, "nested": {"x": None}}


# ---------------------------------------------------------------- RNG states, the loss scale


def test_cuda_rng_states_are_restored_where_they_fit() -> None:
    states = [torch.full((8,), i, dtype=torch.uint8) for i in range(4)]  # an old file: every visible GPU
    assert list(rng.cuda_states(states, 1)) == [0]  # restored on a machine with one GPU: no IndexError
    assert rng.cuda_states(states, 1)[0] is states[0]
    assert list(rng.cuda_states({2: states[2]}, 1)) == []  # a device this machine lacks
    assert rng.cuda_states({2: states[2]}, 1, target=0)[0] is states[2]  # the run's one device -> the one now
    assert "cuda" not in rng.rng_state(torch.device("cpu"))
    rng.set_rng_state({**rng.rng_state(), "cuda": states}, device_count=1)  # no error


# ---------------------------------------------------------------- precision


@pytest.mark.parametrize("impl", ["fused", "cell", "scratch"])
def test_bf16_runs_the_recurrent_layer_in_bf16_for_every_implementation(impl: str) -> None:
    cfg = load_config(None, [f"model.impl={impl}", "model.hidden_size=8", "model.num_layers=2",
                             "train.precision=bf16", "train.device=cpu"])
    model = SequenceClassifier(cfg.model, 5, 3)
    seen = []
    model.rnn.register_forward_hook(lambda module, args, out: seen.append((args[0].dtype, out[0].dtype)))
    with autocast(cfg.train, torch.device("cpu")):
        logits = model(torch.randn(4, 6, 5))
    logits.float().sum().backward()
    assert seen == [(torch.bfloat16, torch.bfloat16)]
    assert model.rnn.weight_hh_l0.grad is not None and model.rnn.weight_hh_l0.grad.dtype == torch.float32


@pytest.fixture
def restore_switches():
    before = (torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32,
              torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
              torch.backends.cudnn.benchmark, os.environ.get("CUBLAS_WORKSPACE_CONFIG"))
    yield
    torch.set_float32_matmul_precision(before[0])
    torch.backends.cudnn.allow_tf32 = before[1]
    torch.use_deterministic_algorithms(before[2])
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before[3:5]
    if before[5] is None:
        os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)


def test_fp32_means_ieee_unless_tf32_is_asked_for(restore_switches: None) -> None:
    devices.configure(load_config().train)
    assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    assert torch.backends.cudnn.rnn.fp32_precision != "tf32"
    devices.configure(load_config(None, ["train.tf32=true"]).train)
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    assert torch.backends.cudnn.rnn.fp32_precision == "tf32"
    from seqclf.use.flops import MATMUL_SIZES
    assert MATMUL_SIZES["cuda"] >= 8 * MATMUL_SIZES["cpu"]


def test_deterministic_sets_torch_switches_and_cannot_change_on_resume(tiny_overrides: list[str],
                                                                       restore_switches: None) -> None:
    os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
    torch.use_deterministic_algorithms(False)
    prepare(load_config(None, tiny_overrides + ["train.deterministic=true"]))
    assert torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.deterministic
    assert not torch.backends.cudnn.benchmark and os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert "train.deterministic" not in keys_where("resume") and "train.tf32" not in keys_where("resume")


def test_resume_may_leave_fp16_only_where_there_is_none() -> None:
    allowed = devices.precision_change_allowed
    assert allowed("fp16", "fp32", "cpu") and allowed("fp16", "bf16", "mps") and allowed("bf16", "bf16", "cuda")
    assert not allowed("fp16", "bf16", "cuda") and not allowed("fp32", "bf16", "cpu")
    assert not allowed("bf16", "fp16", "cuda")


def test_a_gpu_fp16_run_continues_on_a_cpu_in_fp32(tiny_overrides: list[str]) -> None:
    summary = train(load_config(None, tiny_overrides + ["train.epochs=1"]), out=Output(quiet=True))
    run_dir = Path(summary["run_dir"])
    payload = checkpoint.load(run_dir / runs.LAST)  # as if trained on CUDA in fp16
    payload["config"]["train"].update(precision="fp16", device="auto")
    checkpoint.save(run_dir / runs.LAST, payload)
    (run_dir / runs.CONFIG).write_text(to_yaml(config_from_dict(payload["config"])))  # its readable copy
    with pytest.raises(SeqclfError) as refused:
        resume(run_dir, ["train.epochs=2"], out=Output(quiet=True))
    assert f"seqclf train --resume {run_dir} --set train.precision=fp32" in str(refused.value)
    done = resume(run_dir, ["train.epochs=2", "train.precision=fp32"], out=Output(quiet=True))
    assert done["status"] == "finished" and done["epochs"] == 2


class Crash(Exception):
    """The machine went down mid-epoch: nothing is saved on the way out."""


def test_a_resume_leaving_fp16_that_crashed_can_be_repeated(tiny_overrides: list[str]) -> None:
    """The first resume writes config.yaml in fp32 before training; when it dies before the next last.pt
    (still fp16), the same command again continues instead of calling config.yaml edited."""
    from stops import StopAt

    summary = train(load_config(None, tiny_overrides + ["train.epochs=1"]), out=Output(quiet=True))
    run_dir = Path(summary["run_dir"])
    payload = checkpoint.load(run_dir / runs.LAST)  # as if trained on CUDA in fp16
    payload["config"]["train"].update(precision="fp16", device="auto")
    checkpoint.save(run_dir / runs.LAST, payload)
    (run_dir / runs.CONFIG).write_text(to_yaml(config_from_dict(payload["config"])))  # its readable copy

    def crash() -> None:
        raise Crash("killed at epoch 2 step 1")

    command = ["train.epochs=2", "train.precision=fp32", "train.device=cpu"]  # on CPU, even where CUDA is
    with pytest.raises(Crash):
        resume(run_dir, command, out=Output(quiet=True), stop=StopAt(on_call={1: crash}))
    assert load_config(run_dir / runs.CONFIG).train.precision == "fp32"  # what the first resume wrote
    assert checkpoint.load(run_dir / runs.LAST)["config"]["train"]["precision"] == "fp16"  # not saved since
    done = resume(run_dir, command, out=Output(quiet=True))
    assert done["status"] == "finished" and done["epochs"] == 2
    assert checkpoint.load(run_dir / runs.LAST)["config"]["train"]["precision"] == "fp32"


def test_a_fp32_run_keeps_its_precision_on_resume(tiny_overrides: list[str]) -> None:
    summary = train(load_config(None, tiny_overrides + ["train.epochs=1"]), out=Output(quiet=True))
    with pytest.raises(SeqclfError, match="cannot change train.precision from fp32 to bf16"):
        resume(summary["run_dir"], ["train.precision=bf16"], out=Output(quiet=True))


# ---------------------------------------------------------------- out of memory


def out_of_memory_on_call(n: int):
    calls = []
    forward = SequenceClassifier.forward

    def failing(self, x):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == n:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return forward(self, x)
    return failing


def test_out_of_memory_while_training_names_a_smaller_batch(tiny_overrides: list[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(SequenceClassifier, "forward", out_of_memory_on_call(3))
    with pytest.raises(TrainingError) as failed:
        train(load_config(None, tiny_overrides), out=Output(quiet=True))
    assert failed.value.exit_code == 1
    assert "out of memory on cpu" in str(failed.value) and "--set train.batch_size=16" in str(failed.value)
    run_dir = next((Path(tiny_overrides[-1].split("=", 1)[1])).iterdir())
    assert runs.RunDir(run_dir).read_summary()["status"] == "failed"


def test_out_of_memory_while_resuming_is_not_a_damaged_checkpoint(tiny_overrides: list[str],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    summary = train(load_config(None, tiny_overrides + ["train.epochs=1"]), out=Output(quiet=True))

    def full(self, state):  # type: ignore[no-untyped-def]
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB")
    monkeypatch.setattr(TrainingState, "load_state_dict", full)
    with pytest.raises(TrainingError) as failed:
        resume(summary["run_dir"], ["train.epochs=2"], out=Output(quiet=True))
    assert failed.value.exit_code == 1 and "damaged" not in str(failed.value)
    assert "while restoring" in str(failed.value) and "train.batch_size=16 --init-from" in str(failed.value)


# ---------------------------------------------------------------- the GPU check


@process  # a python that imports torch, as the script's check does
@posix_only
def test_gpu_check_refuses_cleanly_without_cuda(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable, "CUDA_VISIBLE_DEVICES": "", "TMPDIR": str(tmp_path)}
    done = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "no CUDA device" in done.stderr and "Traceback" not in done.stderr + done.stdout
