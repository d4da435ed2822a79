"""Everything a person reads goes through here (rich on a terminal, plain lines otherwise).

Human output goes to stdout, or to stderr when `--json` keeps stdout for one JSON object.
Without a terminal (pipes, CI, nohup) there are no colours, progress bars or control codes:
one plain line per event, easy to grep.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any, Iterator

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table


class Output:
    """One place that decides where and how human-readable output is shown."""

    def __init__(self, json_mode: bool = False, quiet: bool = False) -> None:
        stream = sys.stderr if json_mode else sys.stdout
        self.quiet = quiet
        self.console = Console(file=stream, highlight=False, soft_wrap=True)
        self.errors = Console(file=sys.stderr, highlight=False, soft_wrap=True)
        self.terminal = self.console.is_terminal and not os.environ.get("CI")
        self._progress: Progress | None = None

    def _print(self, text: str) -> None:
        if self.quiet:
            return
        target = self._progress.console if self._progress is not None else self.console
        if self.terminal:
            target.print(text)
        else:
            target.print(_plain(text), markup=False)

    def info(self, text: str) -> None:
        self._print(text)

    def error(self, text: str) -> None:
        terminal = self.errors.is_terminal
        self.errors.print(f"[bold red]error:[/] {escape(text)}" if terminal else f"error: {text}", markup=terminal)

    def warn(self, text: str) -> None:
        if not self.quiet:
            terminal = self.errors.is_terminal
            self.errors.print(f"[yellow]warning:[/] {escape(text)}" if terminal else f"warning: {text}", markup=terminal)

    def epoch(self, row: dict[str, Any], epochs: int) -> None:
        """One line per epoch: the same fields as metrics.jsonl, aligned."""
        best = " [green]*[/]" if row.get("best") else ""
        self._print(
            f"epoch {row['epoch']:>{len(str(epochs))}}/{epochs}  "
            f"train loss {row['train_loss']:.4f} acc {row['train_accuracy']:.4f}  "
            f"val loss {row['val_loss']:.4f} acc [bold]{row['val_accuracy']:.4f}[/]{best}  "
            f"lr {row['lr']:.2e}  grad {row['grad_norm']:.3g} clipped {row['clipped_fraction']:.0%}  "
            + (f"skipped {row['skipped_steps']} (fp16 overflow)  " if row.get("skipped_steps") else "")
            + f"{row['seconds']:.1f}s  {row['examples_per_s']:,.0f} ex/s"
        )

    @contextlib.contextmanager
    def progress(self, total: int, description: str) -> Iterator[Any]:
        """A batch progress bar on a terminal; a no-op object otherwise."""
        if self.quiet or not self.terminal:
            yield _NoProgress()
            return
        bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                       TimeRemainingColumn(), console=self.console, transient=True)
        self._progress = bar
        try:
            with bar:
                task = bar.add_task(description, total=total)
                yield _Advance(bar, task)
        finally:
            self._progress = None

    def table(self, title: str | None, columns: list[str], rows: list[list[str]]) -> None:
        if self.quiet:
            return
        table = Table(title=title, box=None, show_edge=False, pad_edge=False)
        for column in columns:
            table.add_column(column, justify="left" if column in ("name", "key", "status", "formula") else "right")
        for row in rows:
            table.add_row(*row)
        if self.terminal:
            self.console.print(table)
            return
        # Plain: the table's natural width (never cut to 80 columns), no trailing blanks.
        for line in self.console.render_lines(table, self.console.options.update(width=1_000_000), pad=False):
            self.console.print("".join(segment.text for segment in line).rstrip(), markup=False)


class _NoProgress:
    def advance(self, steps: int = 1) -> None:
        pass

    def update(self, **fields: Any) -> None:
        pass


class _Advance:
    def __init__(self, bar: Progress, task: Any) -> None:
        self.bar, self.task = bar, task

    def advance(self, steps: int = 1) -> None:
        self.bar.advance(self.task, steps)

    def update(self, **fields: Any) -> None:
        self.bar.update(self.task, **fields)


def _plain(text: str) -> str:
    """Strip rich markup for plain output."""
    from rich.text import Text

    return Text.from_markup(text).plain
