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


def test_usage_lines_name_arguments_as_written() -> None:
    """A required argument is its name (CHECKPOINT), an optional one [DIR]: no braces."""
    usage = {}
    for path, _ in commands(typer.main.get_command(app)):
        shown = runner.invoke(app, [*path, "--help"])
        usage[" ".join(path)] = next(line for line in shown.stdout.splitlines() if line.startswith("Usage:"))
    assert not [line for line in usage.values() if "{" in line], usage
    assert usage["eval"].endswith("eval [OPTIONS] CHECKPOINT")
    assert usage["predict"].endswith("predict [OPTIONS] CHECKPOINT INPUT...")
    assert usage["runs"].endswith("runs [OPTIONS] [DIR] COMMAND [ARGS]...")  # COMMAND: rm
    assert usage["runs rm"].endswith("runs [DIR] rm [OPTIONS] [RUN]...")
    assert usage["config diff"].endswith("RUN_A RUN_B")


def test_usage_errors_are_one_line_in_seqclfs_style_with_a_hint_to_help() -> None:
    for args, fragment in [(["train", "--foo"], "No such option: --foo"),
                           (["eval"], "Missing argument 'CHECKPOINT'"),
                           (["eval", "a", "b"], "Got unexpected extra argument(s) (b)"),
                           (["runs", "--sort"], "Option '--sort' requires an argument"),
                           (["bogus"], "No such command 'bogus'"),
                           (["bench", "--config", "lstm", "--steps", "x"], "Invalid value for '--steps'"),
                           (["config", "show", "--nope"], "No such option: --nope")]:
        result = runner.invoke(app, args, prog_name="seqclf")
        assert result.exit_code == 2, (args, result.output)
        assert result.stdout == "" and result.stderr.count("\n") == 1, (args, result.stderr)
        command = " ".join(["seqclf", *[a for a in args[:2] if a in ("train", "eval", "runs", "bench", "config",
                                                                         "show")]])
        assert result.stderr.startswith(f"error: {fragment}"), (args, result.stderr)
        assert result.stderr.rstrip().endswith(f"(see {command} --help)"), (args, result.stderr)
