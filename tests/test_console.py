"""Terminal output: epoch lines that fit the width, a legend for `*`, a live bar with the run's time left,
and what to run next."""

from __future__ import annotations

import io
import json
from pathlib import Path
from types import SimpleNamespace

import torch
from helpers import epoch, set_args
from rich.console import Console
from typer.testing import CliRunner

from seqclf import console
from seqclf.cli.app import app
from seqclf.progress import RunTimeLeft

ROW = {**epoch(3, 0.8634), "train_loss": 0.41234, "train_accuracy": 0.85123, "lr": 1e-3, "grad_norm": 1.234,
       "examples_per_s": 12345.6, "best": True}


def terminal(width: int) -> tuple[console.Output, io.StringIO]:
    out, buffer = console.Output(), io.StringIO()
    out.console = Console(file=buffer, width=width, force_terminal=True, color_system=None, highlight=False)
    out.terminal = True
    return out, buffer


def test_epoch_lines_fit_the_terminal_and_keep_the_accuracies() -> None:
    for width in (80, 100, 200):
        out, buffer = terminal(width)
        out.epoch(ROW, 12)
        legend, line = buffer.getvalue().splitlines()
        assert "*" in legend and "best.pt" in legend
        assert len(line) <= width, (width, line)
        assert line.startswith("epoch  3/12") and "train loss 0.4123 acc 0.8512" in line
        assert "val loss" in line and "acc 0.8634 *" in line
    assert "ex/s" in line and "lr 1.00e-03" in line and "grad 1.23" in line  # wide: every field
    out, buffer = terminal(80)
    out.epoch(ROW, 12)
    out.epoch({**ROW, "epoch": 4, "best": False}, 12)
    assert buffer.getvalue().count("marks a new best") == 1  # the legend once


def test_plain_logs_keep_every_field_on_one_line(capsys) -> None:
    out = console.Output()
    out.epoch(ROW, 12)
    line = capsys.readouterr().out.splitlines()[-1]
    assert all(part in line for part in ("lr 1.00e-03", "grad 1.23 clipped 0%", "12,346 ex/s", "2.0s"))


def test_the_bar_shows_live_loss_accuracy_and_the_whole_runs_time_left() -> None:
    out, _ = terminal(80)
    with out.progress(10, "epoch 1/3", steps_after=20) as bar:
        bar.show({"loss": torch.tensor(16.0), "correct": torch.tensor(24.0), "steps": torch.tensor(1.0)}, 32)
        task = bar.bar.tasks[0]
        assert task.fields["live"] == "loss 0.5000 acc 0.7500"
    column = RunTimeLeft(steps_after=20)
    assert column.render(SimpleNamespace(speed=2.0, remaining=4)).plain == "run 0:00:12 left"  # (4 + 20) / 2
    assert column.render(SimpleNamespace(speed=None, remaining=4)).plain == "run -:--:-- left"


def test_a_finished_training_says_what_to_run_next(tiny_overrides: list[str]) -> None:
    result = CliRunner().invoke(app, ["train", "--config", "rnn", *set_args([*tiny_overrides, "train.epochs=1",
                                                                             "model.hidden_size=8"])])
    assert result.exit_code == 0, result.output
    summary = next(Path(tiny_overrides[-1].split("=", 1)[1]).glob("*/summary.json"))
    run_dir = json.loads(summary.read_text())["run_dir"]
    lines = result.stdout.splitlines()
    assert "marks a new best validation accuracy" in result.stdout
    assert lines[-3:] == [f"  seqclf eval {run_dir}/best.pt", f"  seqclf plot {run_dir} -o curves.png",
                          f"  seqclf runs {Path(run_dir).parent}"]


def error_terminal(width: int) -> tuple[console.Output, io.StringIO]:
    """An Output whose error console is a terminal `width` columns wide, made as Output makes its own."""
    out, buffer = console.Output(), io.StringIO()
    out.errors = Console(file=buffer, width=width, force_terminal=True, color_system=None, highlight=False,
                         soft_wrap=True)
    return out, buffer


LONG = ("dataset 'mnist': train-images-idx3-ubyte, train-labels-idx1-ubyte (plain or .gz) not found in "
        "/tmp/nodata/MNIST/raw or /tmp/nodata, and downloading them failed:\n"
        "  Error downloading train-images-idx3-ubyte.gz:\n"
        "  Tried https://ossci-datasets.s3.amazonaws.com/mnist/, got: <urlopen error [Errno -2] Name or service "
        "not known>\nFix: point data.root at the folder that holds them (--set data.root=DIR).")


def test_errors_and_warnings_wrap_between_words_and_keep_every_word() -> None:
    for show, label in (("error", "error:"), ("warn", "warning:")):
        out, buffer = error_terminal(80)
        getattr(out, show)(LONG)
        lines = [line.rstrip() for line in buffer.getvalue().splitlines()]
        assert max(len(line) for line in lines) <= 80, lines
        assert " ".join(lines).split() == f"{label} {LONG}".split()  # no word cut, none lost or split in two
        assert "  Tried https://ossci-datasets.s3.amazonaws.com/mnist/, got: <urlopen error" in lines
