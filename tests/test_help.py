"""Every command's --help: shown as written (no markup eating brackets), no Python types, and --version."""

from __future__ import annotations

import re
from typing import Any

import typer
from typer.testing import CliRunner

from seqclf import __version__
from seqclf.cli.app import app

runner = CliRunner()
TYPE_SHOWN = re.compile(r"<(bool|str|int|float|path|file|dir|text|integer|list\[[^\]]*\])>", re.IGNORECASE)


def commands(group: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """(path, command) of the app and every command under it."""
    found = [(path, group)]
    for name, command in getattr(group, "commands", {}).items():
        found += commands(command, (*path, name))
    return found


def squeeze(text: str) -> str:
    """Without whitespace: help is rewrapped to the width (textwrap may break after a hyphen)."""
    return "".join(text.split())


def test_every_help_shows_its_text_whole_and_no_python_types() -> None:
    tree = commands(typer.main.get_command(app))
    assert {" ".join(path) for path, _ in tree} >= {"train", "eval", "runs", "plot", "bench", "shapes",
                                                     "config show", "config diff", "config list", "config cp"}
    for path, command in tree:
        shown = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "80"})
        assert shown.exit_code == 0, (path, shown.output)
        assert not TYPE_SHOWN.search(shown.stdout), (path, TYPE_SHOWN.search(shown.stdout))
        text = squeeze(shown.stdout)
        for param in command.params:  # each help string whole: nothing in [...] or {...} swallowed
            if getattr(param, "help", None):
                assert squeeze(param.help) in text, (path, param.name, param.help)
        if command.help:
            assert squeeze(command.help.split("\n\n")[0]) in text, path
        for line in (command.epilog or "").splitlines():  # examples kept as written, one per line
            if line.strip() and line.strip() != "\b":
                assert line.strip() in shown.stdout, (path, line)


def test_the_issues_examples_read_in_full() -> None:
    diff = runner.invoke(app, ["config", "diff", "--help"]).stdout
    assert squeeze("Print {key: [value in A, value in B]} as JSON.") in squeeze(diff)
    plot = runner.invoke(app, ["plot", "--help"]).stdout
    assert squeeze("[default: curves.png, confusion.png, mistakes.png]") in squeeze(plot)
    assert 'pip install "seqclf[plot]"' in plot


def test_version() -> None:
    shown = runner.invoke(app, ["--version"])
    assert shown.exit_code == 0 and shown.stdout == f"seqclf {__version__}\n"
