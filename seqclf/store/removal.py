"""Removing runs (`seqclf runs rm`): only runs that `seqclf runs` lists, never one a process trains in,
and each whole or not at all.

A run is first renamed to a hidden folder beside it (`.NAME.removing-PID`, one atomic rename), then
deleted: a listing sees the run whole or not at all, and a failure part-way through the deletion leaves
only that hidden folder, which no listing reads (RunDir.find skips hidden folders).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from seqclf.config import suggest
from seqclf.errors import SeqclfError
from seqclf.store.lock import RunLocked
from seqclf.store.rundir import STATUSES, RunDir
from seqclf.store.table import RunRecord, list_runs

LISTED_STATUSES = (*STATUSES, "damaged")  # what `seqclf runs` shows in its status column


def chosen_runs(root: Path, names: list[str], statuses: list[str]) -> list[RunRecord]:
    """The runs under `root` named (as `seqclf runs` lists them, or by their path), kept to those whose status
    is one of `statuses` when given (all the runs under `root` when no name is given). Nothing chosen by a
    name that is not a run under `root` (or a status that does not exist): a SeqclfError naming it."""
    if not names and not statuses:
        raise SeqclfError("runs rm: give the runs to remove (their names as `seqclf runs -q` prints them) "
                          "or --status STATUS")
    for status in statuses:
        if status not in LISTED_STATUSES:
            raise SeqclfError(f"--status {status}: not a status; one of {', '.join(LISTED_STATUSES)}"
                              + _closest(status, list(LISTED_STATUSES)))
    records = list_runs(root)
    by_name = {record.row["name"]: record for record in records}
    by_path = {record.path.resolve(): record for record in records}
    picked: dict[str, RunRecord] = {}
    for name in names:
        record = by_name.get(name.rstrip("/")) or by_path.get(Path(name).resolve())
        if record is None:
            raise SeqclfError(f"{name}: not a run under {root} (`seqclf runs {root}` lists them; for runs "
                              f"in another folder give --dir FOLDER); nothing was removed"
                              + _closest(name, list(by_name)))
        picked[record.row["name"]] = record
    return [record for record in (picked.values() if names else records)
            if not statuses or record.row["status"] in statuses]


def _closest(name: str, candidates: list[str]) -> str:
    """`; did you mean `x`?` for a near miss, else nothing (the listing, not a list of every run, says the rest)."""
    hint = suggest(name, candidates) if candidates else ""
    return hint if "did you mean" in hint else ""


def check_free(run_dir: RunDir) -> None:
    """RunLocked when a live process trains in the run (it holds RUN_DIR/.lock)."""
    pid = run_dir.holder()
    if pid is not None:
        raise RunLocked(f"{run_dir}: process {pid or '(unknown PID)'} is training in it now, so it is not removed "
                        f"(nor any other run given); wait for it to end, or stop it (kill -INT {pid or 'PID'}) "
                        f"first; nothing was removed")


def remove_runs(run_dirs: list[RunDir]) -> Iterator[tuple[RunDir, Path | None]]:
    """Remove each run, yielding it once gone with the hidden folder its files were left in when they could
    not all be deleted (else None). Every run is locked first, so none is removed while one is in use."""
    held: list[RunDir] = []
    try:
        for run_dir in run_dirs:
            check_free(run_dir)
            run_dir.lock()  # also keeps a --resume from starting in it while it goes
            held.append(run_dir)
        for run_dir in run_dirs:
            yield run_dir, _remove(run_dir)
    finally:
        for run_dir in held:
            run_dir.unlock()


def _remove(run_dir: RunDir) -> Path | None:
    hidden = run_dir.path.with_name(f".{run_dir.path.name}.removing-{os.getpid()}")
    try:
        os.rename(run_dir.path, hidden)
    except OSError as exc:
        raise SeqclfError(f"{run_dir}: cannot be removed ({exc.strerror or exc}); it is intact") from None
    shutil.rmtree(hidden, ignore_errors=True)
    return hidden if hidden.exists() else None
