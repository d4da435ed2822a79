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


class Pruned(SeqclfError):
    """A hyperparameter search stopped this trial after an epoch (seqclf.tune); summary.json says `pruned`."""
