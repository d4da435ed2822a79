"""What every command module of the CLI shares: the exception boundary, JSON output, common options.

Help text is plain (typer's `rich_markup_mode=None`): square brackets in help, such as
`[default: curves.png]` or `{key: [a, b]}`, are shown as written instead of being read as markup.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any, Iterator

import typer
import typer.core

from seqclf.console import Output
from seqclf.errors import Interrupted, SeqclfError, Terminated
from seqclf.store.files import to_json
from seqclf.training import ranks

# typer adds an argument's Python type to its help line (`RUN_DIR... <list[Path]>`); every argument
# here has a metavar (RUN_DIR..., FILE..., CHECKPOINT) that says what it takes, so the type is left out.
typer.core.TyperArgument.display_type_rich = lambda self, ctx: None  # type: ignore[method-assign]

# typer puts a required argument in braces on the usage line (`eval [OPTIONS] {CHECKPOINT}`); click's way,
# as every --help here describes them: CHECKPOINT required, [DIR] optional, INPUT... several
def _usage_name(self: typer.core.TyperArgument) -> str:
    name = self.display_name_raw if self.required else f"[{self.display_name_raw}]"
    return name + ("..." if self.nargs != 1 else "")


typer.core.TyperArgument._usage_display_name = _usage_name  # type: ignore[method-assign]


def _show_usage_error(self: Any, file: Any = None) -> None:
    """Usage errors (an unknown option, a missing argument) in seqclf's style: one line on stderr,
    `error: ...`, with the command's --help to read; exit status 2 as before."""
    command = self.ctx.command_path if self.ctx is not None else "seqclf"
    Output().error(f"{' '.join(self.format_message().split())} (see {command} --help)")


# typer (0.29) parses with its own copy of click, typer._click, and shows its usage errors with this method
UsageError = typer.core._click.exceptions.UsageError  # type: ignore[attr-defined]
UsageError.show = _show_usage_error


def _naming_the_command(parse: Any) -> Any:
    """parse_args whose usage errors know their command (click's parser raises some without it)."""
    def parse_args(self: Any, ctx: Any, args: list[str]) -> list[str]:
        try:
            return parse(self, ctx, args)
        except UsageError as exc:
            exc.ctx = exc.ctx or ctx
            raise
    return parse_args


for _kind in (typer.core.TyperCommand, typer.core.TyperGroup):
    _kind.parse_args = _naming_the_command(_kind.parse_args)  # type: ignore[method-assign]

HELP_SETTINGS: dict[str, Any] = {"help_option_names": ["-h", "--help"]}


def sub_app(help_text: str) -> typer.Typer:
    """A typer app (or command group) with seqclf's help settings."""
    return typer.Typer(help=help_text, no_args_is_help=True, rich_markup_mode=None,
                       context_settings=HELP_SETTINGS)


@contextlib.contextmanager
def reported(out: Output) -> Iterator[None]:
    """The one place where exceptions become messages and exit codes."""
    try:
        yield
    except SeqclfError as exc:
        if ranks.should_report(exc):  # under torchrun rank 0 reports what every rank shares
            # a stop the user asked for (Ctrl-C, SIGTERM) is said plainly: it is not an error
            (out.notice if isinstance(exc, Interrupted) else out.error)(str(exc))
        else:
            ranks.linger()
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt as exc:
        terminated = isinstance(exc, Terminated)
        out.notice(f"{'terminated (SIGTERM)' if terminated else 'aborted (Ctrl-C)'}; files already on disk are "
                   f"intact (every file is written atomically)")
        raise typer.Exit(143 if terminated else 130) from None


def emit_json(data: Any) -> None:
    sys.stdout.write(to_json(data) + "\n")  # strict: a non-finite value is null
    sys.stdout.flush()
