"""Everything a person reads goes through here (rich on a terminal, plain lines otherwise).

Human output goes to stdout, or to stderr when `--json` keeps stdout for one JSON object.
Without a terminal (pipes, CI, nohup) there are no colours, progress bars or control codes:
one plain line per event, easy to grep.
"""

from __future__ import annotations

import contextlib
import os
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
)
from rich.table import Table
from rich.text import Text

from seqclf.progress import Advance, NoProgress, RunTimeLeft

LEFT = ("name", "key", "status", "formula", "input", "next guesses")  # left-aligned whatever they hold


class Output:
    """One place that decides where and how human-readable output is shown."""

    def __init__(self, json_mode: bool = False, quiet: bool = False) -> None:
        stream = sys.stderr if json_mode else sys.stdout
        self.quiet = quiet
        self.console = Console(file=stream, highlight=False, soft_wrap=True)
        self.errors = Console(file=sys.stderr, highlight=False, soft_wrap=True)
        self.terminal = self.console.is_terminal and not os.environ.get("CI")
        self._progress: Progress | None = None
        self._legend_shown = False
        self.warned: set[str] = set()  # the `once` keys of warnings already shown

    def _print(self, text: str, wrap: bool = False) -> None:
        if self.quiet:
            return
        target = self._progress.console if self._progress is not None else self.console
        if self.terminal:  # wrapped at spaces to the terminal's width, never mid-number
            target.print(text, soft_wrap=False)
        elif wrap:  # at spaces to 80 columns (or COLUMNS), continued lines indented; a word is never cut
            for line in textwrap.wrap(_plain(text), target.width, subsequent_indent="  ", break_long_words=False,
                                      break_on_hyphens=False):
                target.print(line, markup=False)
        else:
            target.print(_plain(text), markup=False)

    def info(self, text: str, wrap: bool = False) -> None:
        """A line; `wrap`: plain output (a pipe, a file) is wrapped to the width too, as a terminal's is."""
        self._print(text, wrap)

    def error(self, text: str) -> None:
        self._tell("[bold red]error:[/]", text)

    def warn(self, text: str, once: str | None = None) -> None:
        """A warning on stderr; of the warnings given the same `once` key, only the first is shown (tune
        says what the whole search space does once, not for every trial)."""
        if once is not None:
            if once in self.warned:
                return
            self.warned.add(once)
        if not self.quiet:
            self._tell("[yellow]warning:[/]", text)

    def notice(self, text: str) -> None:
        """On stderr with no label, even when quiet: what the user asked for happened (a stop on Ctrl-C)."""
        self._tell("", text)

    def _tell(self, label: str, text: str) -> None:
        """`label text` on stderr: on a terminal wrapped between words at its width (never a word cut in
        two by the terminal's own wrapping); piped, each line of the text whole, for grep."""
        if self.errors.is_terminal:
            self.errors.print(f"{label} {escape(text)}".lstrip(), soft_wrap=False)
        else:
            self.errors.print(f"{_plain(label)} {text}".lstrip(), markup=False)

    def epoch(self, row: dict[str, Any], epochs: int) -> None:
        """One line per epoch (the metrics.jsonl fields). On a terminal it fits the width: the less
        important fields are left out when narrow; a plain log keeps them all."""
        if not self._legend_shown:
            self._legend_shown = True
            self._print("[dim]* marks a new best validation accuracy: best.pt holds that epoch[/]")
        fields = _epoch_fields(row, epochs)
        width = self.console.width if self.terminal else None
        self._print("  ".join(_fit(fields, width)))

    @contextlib.contextmanager
    def progress(self, total: int, description: str, steps_after: int = 0) -> Iterator[Any]:
        """A batch progress bar on a terminal (live loss and accuracy of the epoch so far, and the time
        left for the whole run: this epoch's steps and `steps_after` more); a no-op object otherwise."""
        if self.quiet or not self.terminal:
            yield NoProgress()
            return
        bar = Progress(TextColumn("{task.description}"), BarColumn(bar_width=None), MofNCompleteColumn(),
                       TextColumn("{task.fields[live]}"), RunTimeLeft(steps_after),
                       console=self.console, transient=True, expand=False)
        self._progress = bar
        try:
            with bar:
                task = bar.add_task(description, total=total, live="")
                yield Advance(bar, task)
        finally:
            self._progress = None

    def next_steps(self, summary: dict[str, Any]) -> None:
        """What to run next with a finished run: score it per class, draw its curves, compare it with others."""
        run_dir, best = Path(summary["run_dir"]), Path(summary["checkpoint"])
        with contextlib.suppress(ValueError):  # under the current folder: the shorter relative paths
            run_dir, best = (path.absolute().relative_to(Path.cwd()) for path in (run_dir, best))
        self._print("next: per-class scores, curves per epoch, and all runs by validation accuracy:")
        for command in (f"seqclf eval {best}", f"seqclf plot {run_dir} -o curves.png",
                        "seqclf runs" if run_dir.parent == Path("runs") else f"seqclf runs {run_dir.parent}"):
            self._print(f"  {escape(command)}")

    def table(self, title: str | None, columns: list[str], rows: list[list[str]], drop: list[str] | tuple = (),
              keep_whole: tuple[str, ...] = (), note: str | None = None, fit: bool = False) -> None:
        """A table, and a `note` under it; on a terminal too narrow for it, the `drop` columns are left out in
        that order (and said so) before any cell of a `keep_whole` column would be cut. Those cells are never
        cut or folded (a name must stay copyable): a table still too wide runs past the width. Plain output
        keeps every column, at its natural width; with `fit`, at the width (80, or COLUMNS), cells wrapped at
        spaces, never cut."""
        if self.quiet:
            return
        hidden: list[str] = []
        while True:
            shown = [i for i, column in enumerate(columns) if column not in hidden]
            table = Table(title=title, box=None, show_edge=False, pad_edge=False)
            for i in shown:  # numbers right-aligned; words, and names even when digits, left
                whole = columns[i] in keep_whole
                left = columns[i] in LEFT or not all(_numeric(row[i]) for row in rows)
                width = max((len(row[i]) for row in rows), default=0) if whole else None
                table.add_column(columns[i], justify="left" if left else "right", no_wrap=whole, min_width=width,
                                 overflow="fold" if fit else "ellipsis")
            for row in rows:
                table.add_row(*(row[i] for i in shown))
            natural = self.console.measure(table, options=self.console.options.update_width(1_000_000)).maximum
            if not self.terminal or len(hidden) == len(drop) or natural <= self.console.width:
                break
            hidden.append(drop[len(hidden)])
        if not self.terminal:
            # Plain: the table's natural width (never cut to 80 columns; `fit`: wrapped), no trailing blanks.
            width = self.console.width if fit else 1_000_000
            for line in self.console.render_lines(table, self.console.options.update(width=width), pad=False):
                self.console.print("".join(segment.text for segment in line).rstrip(), markup=False)
            if note:
                self.console.print(note, markup=False)
            return
        if natural <= self.console.width or fit:
            self.console.print(table)
        else:  # rich would squeeze every column to the width: laid out at its own width, the lines run past it
            for line in self.console.render_lines(table, self.console.options.update(width=natural), pad=False):
                self.console.print(Text.assemble(*((segment.text, segment.style) for segment in line)), soft_wrap=True)
        if hidden:  # wrapped at the width, as the table is
            self.console.print(f"[dim]hidden at this width: {', '.join(hidden)} (--columns chooses)[/]",
                               soft_wrap=False)
        if note:
            self.console.print(f"[dim]{escape(note)}[/]", soft_wrap=False)

    def evaluation(self, result: dict[str, Any], checkpoint: Any) -> None:
        """`seqclf eval`: accuracy, then per-class accuracy and the confusion matrix by class name."""
        self.info(f"{checkpoint}: {result['split']} accuracy [bold]{result['accuracy']:.4f}[/], loss "
                  f"{result['loss']:.4f} on {result['n']:,} examples")
        if "calibration" in result:
            self.info(_reading_line(result))
        self.confusion(result)

    def confusion(self, result: dict[str, Any]) -> None:
        """Per-class accuracy and the confusion matrix by class name, of eval's or predict --labels' scores."""
        names = result["class_names"]
        self.table("per-class accuracy", ["name", "accuracy", "examples"],
                   [[name, "-" if a is None else f"{a:.3f}", f"{sum(row):,}"]
                    for name, a, row in zip(names, result["per_class_accuracy"], result["confusion_matrix"])])
        self.info("confusion matrix: rows are the true class, columns the predicted class")
        self.table(None, ["name", *names],
                   [[name, *map(str, row)] for name, row in zip(names, result["confusion_matrix"])])

    def predictions(self, records: list[dict[str, Any]], top_k: int) -> None:
        """`seqclf predict`: one row per input (with --labels its true class); the next K-1 guesses as `name (p)`."""
        truth = bool(records) and "true_class" in records[0]
        columns = ["input", "predicted", "probability"] + (["true class", "correct"] if truth else []) \
            + (["next guesses"] if top_k > 1 else [])
        rows = [[escape(r["input"]), escape(r["predicted_class"]), f"{r['probability']:.3f}"]
                + ([escape(r["true_class"]), "yes" if r["correct"] else "NO"] if truth else [])
                + ([", ".join(f"{escape(g['predicted_class'])} ({g['probability']:.3f})" for g in r["top_k"][1:])]
                   if top_k > 1 else []) for r in records]
        self.table(None, columns, rows)

    def traces(self, result: dict[str, Any], steps: list[int], top_k: int) -> None:
        """`seqclf trace`: per input, its final guess, then the top classes after the chosen steps."""
        step = result["step"]
        for trace in result["traces"]:
            guess = escape(trace["predicted_class"])
            self.info(f"{escape(trace['input'])}: [bold]{guess}[/] {trace['probability']:.3f}, "
                      f"on top from {step} {trace['decided_at']} of {result['steps']}")
            rows = []
            for k in steps:
                ranked = sorted(enumerate(trace["probabilities"][k - 1]), key=lambda pair: -pair[1])[:top_k]
                rows.append([str(k), *(f"{escape(result['class_names'][label])} {p:.3f}" for label, p in ranked)])
            self.table(None, [f"{step}s read", *(f"guess {rank}" for rank in range(1, len(rows[0])))], rows)


def _reading_line(result: dict[str, Any]) -> str:
    """eval's accuracy had reading stopped early (at quarters of the sequence), and its calibration error."""
    by_step, step, calibration = result["accuracy_by_step"], result["step"], result["calibration"]
    ece = calibration["ece"]
    calibrated = (f"calibration: ECE {ece:.4f} ({len(calibration['bins'])} bins)" if ece is not None
                  else "calibration: no examples")
    if by_step is None:
        return f"{calibrated}; accuracy by {step}s read {result['accuracy_by_step_note']}"
    marks = sorted({max(1, round(len(by_step) * q / 4)) for q in (1, 2, 3, 4)})
    return (f"accuracy after {'/'.join(map(str, marks))} of {len(by_step)} {step}s read: "
            f"{' / '.join(f'{by_step[k - 1]:.3f}' for k in marks)}; {calibrated}")


def as_yaml(value: Any, digits: int = 4) -> str:
    """A config value as YAML writes it (true, false, null), a float to `digits` significant digits: how
    parameters and values are shown to a person (0.2631288096906184 -> 0.2631)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def _epoch_fields(row: dict[str, Any], epochs: int) -> list[tuple[int, str]]:
    """(priority, text) per field in display order; priority 0 is always shown, higher goes first when narrow."""
    best = " [green]*[/]" if row.get("best") else "  "
    return [(0, f"epoch {row['epoch']:>{len(str(epochs))}}/{epochs}"),
            (0, f"train loss {row['train_loss']:.4f} acc {row['train_accuracy']:.4f}"),
            (0, f"val loss {row['val_loss']:.4f} acc [bold]{row['val_accuracy']:.4f}[/]{best}"),
            (1, f"{row['seconds']:.1f}s"),
            (3, f"lr {row['lr']:.2e}"),
            (4, f"grad {row['grad_norm']:.3g} clipped {row['clipped_fraction']:.0%}"),
            (2, f"{row['examples_per_s']:,.0f} ex/s")] + \
        ([(1, f"skipped {row['skipped_steps']} (fp16 overflow)")] if row.get("skipped_steps") else [])


def _fit(fields: list[tuple[int, str]], width: int | None) -> list[str]:
    """The fields that fit in `width` characters joined by two spaces, dropping the highest priorities first."""
    kept = list(fields)
    while width is not None and any(p for p, _ in kept):
        if sum(len(_plain(text)) + 2 for _, text in kept) - 2 <= width - 1:
            break
        kept.remove(max(kept, key=lambda field: field[0]))
    return [text for _, text in kept]


def _numeric(cell: str) -> bool:
    """`0.8500 ± 0.0500`, `1,024`, `12.5s`, `-` (none): a cell to right-align."""
    return cell == "-" or cell[:1].isdigit() or (cell[:1] == "-" and cell[1:2].isdigit())


def _plain(text: str) -> str:
    """Strip rich markup for plain output."""
    return Text.from_markup(text).plain
