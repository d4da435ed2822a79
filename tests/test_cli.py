"""End to end through the real CLI: train -> files -> eval, JSON contracts, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, cli_json, process, set_args
from typer.testing import CliRunner

from seqclf.cli.app import app

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args))



def test_train_then_eval_reproduces_test_accuracy(tiny_overrides: list[str]) -> None:
    result = run("train", "--config", str(ROOT / "configs/lstm.yaml"), *set_args(tiny_overrides),
                 "--set", "train.lr=0.003", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)  # stdout holds exactly one JSON object
    for key in ("run_dir", "checkpoint", "epochs", "val_accuracy", "test_accuracy", "seconds"):
        assert key in summary
    run_dir = Path(summary["run_dir"])
    assert {p.name for p in run_dir.iterdir()} >= {"config.yaml", "metrics.jsonl", "best.pt", "last.pt",
                                                    "summary.json"}
    assert summary["epochs"] == 2 and summary["test_accuracy"] > 0.3  # chance is 0.1
    assert json.loads((run_dir / "summary.json").read_text()) == summary
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in lines] == [1, 2]
    for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds"):
        assert all(isinstance(row[key], float) for row in lines)
    assert "epoch 1/2" in result.stderr  # human output moved to stderr by --json

    evaluated = run("eval", summary["checkpoint"], "--json")
    assert evaluated.exit_code == 0, evaluated.output
    scores = json.loads(evaluated.stdout)
    assert scores["accuracy"] == summary["test_accuracy"]
    assert scores["loss"] == pytest.approx(summary["test_loss"], abs=1e-9)
    assert scores["n"] == 200 and len(scores["per_class_accuracy"]) == 10
    matrix = scores["confusion_matrix"]
    assert len(matrix) == 10 and all(len(row) == 10 for row in matrix)
    assert sum(map(sum, matrix)) == 200
    assert sum(matrix[k][k] for k in range(10)) / 200 == scores["accuracy"]

    val = json.loads(run("eval", summary["checkpoint"], "--json", "--split", "val").stdout)
    assert val["n"] == 100 and val["accuracy"] == summary["val_accuracy"]


def test_set_overrides_reach_the_run(tiny_overrides: list[str]) -> None:
    result = run("train", "--config", str(ROOT / "configs/lstm.yaml"), *set_args(tiny_overrides),
                 "--set", "model.cell=gru", "--set", "train.epochs=1", "--set", "model.bidirectional=true",
                 "--json")
    assert result.exit_code == 0, result.output
    run_dir = Path(json.loads(result.stdout)["run_dir"])
    assert run_dir.name.startswith("gru-1x16-bi-")
    config = (run_dir / "config.yaml").read_text()
    assert "cell: gru" in config and "bidirectional: true" in config and "epochs: 1" in config


def test_plain_output_has_no_control_codes(tiny_overrides: list[str]) -> None:
    result = run("train", "--config", str(ROOT / "configs/gru.yaml"), *set_args(tiny_overrides))
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and "\r" not in result.output
    assert sum(line.startswith("epoch ") for line in result.stdout.splitlines()) == 2


def test_missing_data_says_where_it_looked(tmp_path: Path) -> None:
    result = run("train", "--config", str(ROOT / "configs/lstm.yaml"), "--set", f"data.root={tmp_path / 'none'}",
                 "--set", "data.download=false", "--set", f"output.dir={tmp_path / 'runs'}")
    assert result.exit_code == 2
    assert str(tmp_path / "none") in result.stderr and "data.root" in result.stderr
    assert "Traceback" not in result.output
    assert not list((tmp_path / "runs").glob("*"))  # no run directory for a run that never started


@pytest.mark.parametrize("args,fragment", [
    (["train"], "--config"),
    (["train", "--config", "no/such.yaml"], "no/such.yaml"),
    (["train", "--config", "configs/lstm.yaml", "--set", "model.hiden_size=3"], "did you mean `model.hidden_size`"),
    (["train", "--config", "configs/lstm.yaml", "--set", "model.cell=transformer"], "rnn, lstm, gru"),
    (["eval", "no/such/best.pt"], "no such checkpoint"),
])
def test_bad_input_exits_2_with_a_message(args: list[str], fragment: str) -> None:
    result = runner.invoke(app, [a if not a.startswith("configs/") else str(ROOT / a) for a in args])
    assert result.exit_code == 2, result.output
    assert fragment in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


@process
def test_python_dash_m_matches_the_entry_point(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "seqclf", "train", "--config", "missing.yaml"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2
    assert "missing.yaml" in done.stderr and "Traceback" not in done.stderr
    helped = subprocess.run([sys.executable, "-m", "seqclf", "--help"], capture_output=True, text=True)
    assert helped.returncode == 0 and "train" in helped.stdout and "eval" in helped.stdout


LSTM = str(ROOT / "configs/lstm.yaml")  # the cosine schedule, as every shipped config


@pytest.fixture(scope="module")
def one_epoch(module_overrides: list[str]) -> dict:
    """The summary of a one-epoch LSTM run, trained once for the module (tests start new runs from it)."""
    return cli_json("train", "--config", LSTM, *set_args(module_overrides), "--set", "train.epochs=1")


def test_init_from_starts_a_new_run_from_another_runs_weights(one_epoch: dict) -> None:
    first = one_epoch
    # with the cosine schedule the run cannot be extended in place: the refusal offers --init-from ...
    refused = run("train", "--resume", first["run_dir"], "--set", "train.epochs=2")
    assert refused.exit_code == 2 and "--init-from" in refused.output, refused.output
    hint = refused.output[refused.output.index("seqclf train --config"):].split()
    # ... and the command it prints works: an SGD step of 1e-30 leaves float32 weights exactly as they were
    second = run(*hint[1:], "--set", "train.optimizer=sgd", "--set", "train.momentum=0", "--set", "train.lr=1e-30",
                 "--json")
    assert second.exit_code == 0, second.output
    summary = json.loads(second.stdout)
    assert summary["init_from"] == str(Path(first["run_dir"]) / "best.pt") and summary["epochs"] == 2
    import torch

    before = torch.load(Path(first["run_dir"]) / "best.pt", weights_only=True)["model"]
    after = torch.load(Path(summary["run_dir"]) / "best.pt", weights_only=True)["model"]
    assert all(torch.equal(before[name], after[name]) for name in before)


def test_init_from_a_checkpoint_of_another_shape_names_the_parameters(one_epoch: dict,
                                                                     tiny_overrides: list[str]) -> None:
    result = run("train", "--config", LSTM, *set_args(tiny_overrides), "--set", "model.cell=gru",
                 "--set", "model.bidirectional=true", "--init-from", one_epoch["checkpoint"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    summary, details = result.stderr.splitlines()  # what differs first, then the parameters
    assert summary.startswith(f"error: --init-from {one_epoch['checkpoint']}: its weights do not fit")
    assert "(checkpoint: lstm 1x16; config: gru 1x16 bidirectional)" in summary
    assert "--set model.cell=lstm --set model.bidirectional=false" in summary
    assert "rnn.weight_ih_l0 (64, 28) vs (48, 28)" in details, result.output
    assert not list(Path(tiny_overrides[-1].split("=", 1)[1]).glob("*")), "no run directory is left behind"


def test_a_stray_idx_label_is_named_in_a_warning(tmp_path: Path) -> None:
    from helpers import FILES, make_dataset, tiny_args, write_idx

    from seqclf.data.idx import read_idx

    data = make_dataset(tmp_path / "data", n_train=300, n_test=50)
    labels = read_idx(data / FILES["train_labels"]).numpy().copy()
    labels[0] = 200  # one stray label would give the model a 201-class head
    write_idx(data / FILES["train_labels"], labels)
    result = run("train", "--config", str(ROOT / "configs/lstm.yaml"), *set_args(tiny_args(data, tmp_path / "runs")),
                 "--set", "train.epochs=1", "--set", "data.val_size=50")
    assert result.exit_code == 0, result.output
    assert "warning: the labels range over 0-200, so the model gets 201 classes, but only 11" in result.stderr


# ---------------------------------------------------------------- every implementation, real data


# A checkpoint trained with model.impl=fused scores the same under `cell` and `scratch`.
@pytest.mark.parametrize("model", [
    ["model.cell=lstm", "model.num_layers=2", "model.bidirectional=true", "model.proj_size=8"],
    ["model.cell=gru", "model.num_layers=2"],
    ["model.cell=rnn", "model.bidirectional=true", "model.nonlinearity=relu"],
])
def test_train_fused_then_eval_with_cell_and_scratch(tiny_overrides: list[str], model: list[str]) -> None:
    summary = cli_json("train", "--config", str(ROOT / "configs/lstm.yaml"),
                       *set_args([*tiny_overrides, *model, "model.impl=fused", "train.lr=0.003"]))
    assert summary["test_accuracy"] > 0.2  # it learned something (chance is 0.1), so equality is not trivial
    scores = {impl: cli_json("eval", summary["checkpoint"], "--set", f"model.impl={impl}")
              for impl in ("fused", "cell", "scratch")}
    for impl, result in scores.items():
        assert result["n"] == 200
        assert result["accuracy"] == summary["test_accuracy"], impl
        assert result["loss"] == pytest.approx(summary["test_loss"], abs=1e-5), impl
        assert result["confusion_matrix"] == scores["fused"]["confusion_matrix"], impl


# Real data: a row-wise LSTM learns the real Fashion-MNIST (Debian's dataset-fashion-mnist).
def test_lstm_learns_real_fashion_mnist(fashion_root: Path, tmp_path: Path) -> None:
    # A 12,000-example subset and 2 epochs in one thread: seconds on a CPU, far above chance (0.10); about 0.79.
    sets = ["data.name=fashion_mnist", f"data.root={fashion_root}", "data.download=false",
            "data.max_train=12000", "data.val_size=2000", "data.max_test=2000", "model.hidden_size=64",
            "train.epochs=2", "train.lr=0.01", "train.device=cpu", "train.num_threads=1", f"output.dir={tmp_path}"]
    args = ["train", "--config", str(ROOT / "configs/lstm.yaml"), "--json"]
    for item in sets:
        args += ["--set", item]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["test_accuracy"] > 0.70, summary
    scored = runner.invoke(app, ["eval", summary["checkpoint"], "--json"])
    assert json.loads(scored.stdout)["accuracy"] == summary["test_accuracy"]


@pytest.mark.parametrize("signum, code", [(2, 130), (15, 143)])  # SIGINT, SIGTERM
def test_a_stop_the_user_asked_for_is_a_notice_and_the_run_resumable(tiny_data: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch,
                                                                     signum: int, code: int) -> None:
    """Ctrl-C (or SIGTERM) mid-epoch, as the signal handler records it: said plainly on stderr, not as an error."""
    from helpers import assert_stopped_by_a_signal_and_resumable, write_config
    from stops import StopAt

    from seqclf.training import start

    monkeypatch.setattr(start, "GracefulStop", lambda: StopAt(3, signum=signum))
    result = run("train", "--config", str(write_config(tmp_path, tiny_data, "r")))
    assert result.stderr.startswith(f"{'SIGINT' if signum == 2 else 'SIGTERM'}: stopped at epoch 1, step 3; "), \
        result.stderr
    assert "error" not in result.stderr
    monkeypatch.undo()
    assert_stopped_by_a_signal_and_resumable(tmp_path / "runs" / "r", result.exit_code, code, result.stderr)
