"""One exception type for every failure a user can fix; only the CLI turns it into output."""

from __future__ import annotations


class SeqclfError(Exception):
    """A problem with the user's input (config, data, checkpoint, paths): exit status 2."""

    exit_code = 2


class TrainingError(SeqclfError):
    """Training itself failed (e.g. a non-finite loss): exit status 1."""

    exit_code = 1


class Interrupted(SeqclfError):
    """Training stopped on SIGINT/SIGTERM after saving `last.pt`: exit 130 or 143."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


class Terminated(KeyboardInterrupt):
    """SIGTERM where no step can be finished first (set-up, the final scoring): the run stops at once, as
    on Ctrl-C, its files intact; exit 143 (seqclf.training.signals.sigterm_stops)."""


class Pruned(SeqclfError):
    """A hyperparameter search stopped this trial after an epoch (seqclf.search.study); summary.json says `pruned`."""


def first_line(exc: BaseException) -> str:
    """The first line of `exc`'s message, or its type's name when the message is empty (e.g. `raise KeyError`)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def preview(value: object, limit: int = 60) -> str:
    """A value as an error message shows it: its repr, cut to `limit` characters.

    reprlib bounds the work too, so even a huge nested value costs microseconds.
    """
    import reprlib

    cut = reprlib.Repr()
    cut.maxlevel, cut.maxstring, cut.maxother, cut.maxlong = 3, limit, limit, limit
    try:
        shown = cut.repr(value)
    except ValueError:  # an int past Python's 4300-digit limit for str()
        shown = f"<{type(value).__name__} of {value.bit_length() if isinstance(value, int) else '?'} bits>"
    return shorten(shown, limit)


def shorten(text: str, limit: int = 60) -> str:
    """`text` itself, or its first `limit` - 3 characters and "..."."""
    return text if len(text) <= limit else text[:limit - 3] + "..."
