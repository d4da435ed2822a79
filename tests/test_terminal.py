"""What seqclf shows in a real terminal of a given width: the command runs in a detached tmux session
(its own tmux server), and the pane is read back as a person would see it."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from helpers import fake_run, process, seqclf_env

pytestmark = [process, pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")]
DONE = "[seqclf-test: exit "


def run_in_tmux(argv: list[str], width: int = 80, env: dict[str, str] | None = None, height: int = 40,
                timeout: float = 60) -> str:
    """The pane of a `width` x `height` terminal in which `argv` ran to its end, as text (trailing blanks
    trimmed), then a last line `[seqclf-test: exit N]`. COLUMNS, LINES and CI are left out of the
    environment, so the program sees the terminal itself."""
    env = {k: v for k, v in (env or os.environ).items() if k not in ("COLUMNS", "LINES", "CI", "TMUX")}
    socket = f"seqclf-test-{uuid.uuid4().hex[:12]}"  # a server of its own: no user's sessions or settings
    tmux = ["tmux", "-L", socket, "-f", os.devnull]
    command = f"{shlex.join(argv)}; echo \"{DONE}$?]\"; sleep {timeout}"
    subprocess.run([*tmux, "new-session", "-d", "-x", str(width), "-y", str(height), command], env=env, check=True,
                   timeout=30)
    try:
        deadline = time.monotonic() + timeout
        while True:
            pane = subprocess.run([*tmux, "capture-pane", "-p"], capture_output=True, text=True, timeout=30).stdout
            if DONE in pane or time.monotonic() > deadline:
                return pane.rstrip("\n")
            time.sleep(0.1)
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True, timeout=30)


def test_runs_at_80_columns_shows_every_name_whole_and_the_model(trained: tuple[Path, Path], tmp_path: Path) -> None:
    run = trained[0].parent  # a tiny lstm run, its generated name ending in a date and time
    root = tmp_path / "runs"
    shutil.copytree(run, root / run.name)
    other = fake_run(root, f"gru-2x32-bi-s1-{run.name.split('-s0-')[1]}-2", [
        "model.cell=gru", "model.num_layers=2", "model.hidden_size=32", "model.bidirectional=true", "seed=1"],
        {"val_accuracy": 0.1})
    pane = run_in_tmux([sys.executable, "-m", "seqclf", "runs", str(root)], width=80, env=seqclf_env())
    lines = pane.splitlines()
    assert lines[-1] == f"{DONE}0]", pane
    assert all(len(line) <= 80 for line in lines), pane
    assert lines[0].split()[:5] == ["name", "cell", "layers", "hidden", "bi"], pane
    for name in (run.name, other.name):  # whole, at the start of its row, on one line: copyable
        assert [line.split()[0] for line in lines].count(name) == 1, pane


def test_an_error_at_80_columns_breaks_between_words_and_keeps_every_word(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from seqclf.cli.app import app

    args = ["train", "--config", "lstm", "--set", "model.hidden_size=big", "--set",
            f"data.root={tmp_path / 'a-folder-whose-name-is-long-enough-to-wrap' / 'nodata'}"]
    piped = CliRunner().invoke(app, args)  # plain output: each paragraph one line
    assert piped.exit_code == 2 and "model.hidden_size" in piped.stderr, piped.output
    pane = run_in_tmux([sys.executable, "-m", "seqclf", *args], width=80, env=seqclf_env())
    lines = pane.splitlines()
    assert lines[-1] == f"{DONE}2]" and all(len(line) <= 80 for line in lines[:-1]), pane
    assert max(len(line) for line in lines) > 60, pane  # long enough to wrap
    assert " ".join(lines[:-1]).split() == piped.stderr.split(), pane  # no word cut, none lost
