"""Run directories: the one owner of a run's folder and of every file in it.

    RUN_DIR/config.yaml      the resolved config (readable; last.pt holds the run's truth)
    RUN_DIR/metrics.jsonl    one JSON object per finished epoch, rewritten whole after each
    RUN_DIR/summary.json     what `train --json` prints; its `status` is one of STATUSES
    RUN_DIR/best.pt          the best epoch's weights (seqclf.store.checkpoint)
    RUN_DIR/last.pt          the last saved state, to resume from
    RUN_DIR/.lock            held by the process training in it (seqclf.store.lock)
    RUN_DIR/tensorboard/     with output.tensorboard on

A `RunDir` makes one (atomic, locked), opens one, finds them, reads and writes each file and
makes the repairs a resume needs; other modules ask it instead of joining file names. Torch is
imported only where a checkpoint is read or written, so `seqclf runs` stays light.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seqclf.config import Config, read_yaml, to_yaml
from seqclf.errors import SeqclfError
from seqclf.store import lock as runlock
from seqclf.store.files import to_json, write_json, write_text
from seqclf.store.naming import check_writable, run_name

if TYPE_CHECKING:
    from seqclf.store.checkpoint import Checkpoint

CONFIG, METRICS, SUMMARY, BEST, LAST = "config.yaml", "metrics.jsonl", "summary.json", "best.pt", "last.pt"
TENSORBOARD = "tensorboard"
STATUSES = ("running", "finished", "interrupted", "failed", "pruned")  # summary.json's `status`


class NotARunDir(SeqclfError):
    def __init__(self, path: Path) -> None:
        super().__init__(f"{path}: not a run directory (no {CONFIG}); `seqclf runs` lists the runs")


class NameTaken(SeqclfError):
    def __init__(self, path: Path) -> None:
        super().__init__(f"output.name: run directory {path} already exists and holds trained epochs, which are "
                         f"never overwritten; continue it with `seqclf train --resume {path}`, or pick another "
                         f"name (or drop output.name for a generated one)")


def _file(name: str, what: str) -> property:
    """A run directory's path to one of its files, as a read-only property."""
    return property(lambda self: self.path / name, doc=f"{name}: {what}.")


@dataclass(frozen=True)
class RunDir:
    """A run directory at `path`. Shown (str, f-strings) and usable (os.fspath) as that path."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    def __str__(self) -> str:
        return str(self.path)

    def __fspath__(self) -> str:
        return str(self.path)

    # ------------------------------------------------------------ the files' paths

    config_path = _file(CONFIG, "the resolved config, readable")
    metrics_path = _file(METRICS, "one JSON object per finished epoch")
    summary_path = _file(SUMMARY, "status, best epoch, scores")
    best = _file(BEST, "the weights of the best validation epoch")
    last = _file(LAST, "everything a resume needs")
    tensorboard = _file(TENSORBOARD, "event files, with output.tensorboard")

    # ------------------------------------------------------------ making, opening, finding

    @classmethod
    def create(cls, cfg: Config) -> RunDir:
        """Make a new run directory under output.dir atomically: an existing one is never overwritten.

        os.mkdir either creates the folder or fails, so parallel jobs started in the same second
        each get their own (`name`, `name-2`, `name-3`, ...). The new directory is locked for this
        process before anything is written. A named directory that exists is reused only when it
        is `restartable`, its set-up's leftovers removed.
        """
        root = Path(cfg.output.dir)
        check_writable(root)
        if cfg.output.name is not None:
            run_dir = cls(root / cfg.output.name)
            try:
                run_dir.path.mkdir()
            except FileExistsError:
                run_dir.lock()  # refuses while another process trains in it
                if not run_dir.restartable():
                    run_dir.unlock()
                    raise NameTaken(run_dir.path) from None
                for path in (run_dir.summary_path, run_dir.metrics_path, run_dir.best):  # no finished epoch
                    path.unlink(missing_ok=True)
                return run_dir
            run_dir.lock()
            return run_dir
        base = run_name(cfg)
        for attempt in range(1, 10_000):
            run_dir = cls(root / (base if attempt == 1 else f"{base}-{attempt}"))
            try:
                run_dir.path.mkdir()
            except FileExistsError:
                continue
            run_dir.lock()
            return run_dir
        raise SeqclfError(f"could not create a new run directory under {root}")

    @classmethod
    def open(cls, path: str | Path) -> RunDir:
        """An existing run directory; NotARunDir otherwise."""
        run_dir = cls(path)
        if not run_dir.exists():
            raise NotARunDir(run_dir.path)
        return run_dir

    @classmethod
    def find(cls, root: str | Path) -> list[RunDir]:
        """Run directories: root itself, its children, or their children (runs/<sweep>/<run>), sorted; hidden
        folders (`.NAME`, such as what `seqclf runs rm` could not finish deleting) are not read."""
        root = Path(root)
        if not root.is_dir():
            raise SeqclfError(f"{root}: no such folder of runs; training writes them under output.dir (default runs/)")
        if cls(root).exists():
            return [cls(root)]
        found = []
        for child in sorted(root.iterdir()):
            if child.name.startswith("."):
                continue
            if cls(child).exists():
                found.append(cls(child))
            elif child.is_dir():
                found += [cls(path) for path in sorted(child.iterdir()) if cls(path).exists()
                          and not path.name.startswith(".")]
        return found

    def exists(self) -> bool:
        """Whether this is a run directory: a folder holding config.yaml, or only the lock of a run
        stopped in set-up before it wrote config.yaml (restartable under its name)."""
        return self.path.is_dir() and (self.config_path.exists() or (self.path / runlock.LOCK).exists())

    def restartable(self) -> bool:
        """True when it holds nothing to resume and no finished epoch (stopped during set-up or its
        first epoch): training it afresh under its name loses nothing."""
        try:
            return not self.last.exists() and not self.read_metrics()
        except SeqclfError:  # a damaged metrics.jsonl: do not guess
            return False

    # ------------------------------------------------------------ the lock and the status

    def lock(self) -> None:
        """Hold the run for this process (seqclf.store.lock); RunLocked names another live holder."""
        runlock.acquire(self.path)

    def unlock(self) -> None:
        runlock.release(self.path)

    def holder(self) -> int | None:
        """The PID of the live process training in it (0 if unknown), or None."""
        return runlock.holder(self.path)

    def status(self) -> str | None:
        """The run's status now: summary.json's, unless its process is gone: a run without summary.json
        (killed in set-up), or "running" with nobody holding the lock, ended "interrupted" when it has
        last.pt, else "failed". None when summary.json is unreadable or its status is not a STATUS."""
        if not self.summary_path.exists():
            return self._ended()
        summary = self.read_summary()
        status = summary.get("status") if isinstance(summary, dict) else None
        if status not in STATUSES:
            return None
        return self._ended() if status == "running" and self.holder() is None else status

    def _ended(self) -> str:
        return "interrupted" if self.last.exists() else "failed"

    # ------------------------------------------------------------ reading and writing the files

    def read_config(self) -> dict[str, Any]:
        """config.yaml as a nested dict (seqclf.config.read_yaml: a SeqclfError when damaged)."""
        return read_yaml(self.config_path)

    def write_config(self, cfg: Config) -> None:
        write_text(self.config_path, to_yaml(cfg))

    def read_metrics(self) -> list[dict[str, Any]]:
        """metrics.jsonl's rows ([] when absent); a damaged file is a SeqclfError naming the line."""
        path = self.metrics_path
        if not path.exists():
            return []
        rows = []
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise SeqclfError(f"{path}: line {number} is not valid JSON ({exc}); seqclf rewrites this file "
                                  f"whole after every epoch, so it was changed by something else") from None
            if not isinstance(row, dict) or not isinstance(row.get("epoch"), int):
                raise SeqclfError(f"{path}: line {number} is not an epoch's metrics object") from None
            rows.append(row)
        return rows

    def write_metrics(self, history: list[dict[str, Any]]) -> None:
        """metrics.jsonl: one JSON object per finished epoch, rewritten whole (atomically)."""
        write_text(self.metrics_path, "".join(to_json(row) + "\n" for row in history))

    def read_summary(self) -> Any:
        """summary.json as written (a dict unless something else wrote it); None when absent or unreadable."""
        try:
            return json.loads(self.summary_path.read_text())
        except (OSError, ValueError):
            return None

    def write_summary(self, summary: dict[str, Any]) -> None:
        assert summary["status"] in STATUSES, summary["status"]
        write_json(self.summary_path, summary)

    def save_best(self, payload: dict[str, Any]) -> None:
        from seqclf.store import checkpoint

        checkpoint.save(self.best, payload)

    def save_last(self, payload: dict[str, Any]) -> None:
        from seqclf.store import checkpoint

        checkpoint.save(self.last, payload)

    def load_best(self) -> dict[str, Any]:
        """best.pt's payload (seqclf.store.checkpoint.load: a CheckpointError when it cannot be used)."""
        from seqclf.store import checkpoint

        return checkpoint.load(self.best)

    def read_last(self) -> Checkpoint:
        """last.pt, checked (seqclf.store.checkpoint.read), holding a training state to resume."""
        from seqclf.store import checkpoint

        saved = checkpoint.read(self.last)
        saved.training_state()  # refuses a file without one
        return saved

    # ------------------------------------------------------------ the repairs a resume makes

    def repair_best(self, saved: Checkpoint) -> bool:
        """Whether best.pt is usable to finish the run from `saved` (its last.pt): there, not needed yet
        (no best epoch), or rebuilt from last.pt when that holds the same weights (saved at the best
        epoch's end, before another step). False: the best epoch's weights are lost; nothing was changed."""
        from seqclf.store import checkpoint

        best_epoch = saved.state.get("best_epoch", 0) if saved.state else 0
        if not best_epoch:
            return True
        try:
            self.load_best()
            return True
        except checkpoint.CheckpointError:
            pass
        if best_epoch == saved.epoch and saved.state.get("order") is None:
            self.save_best(checkpoint.pack(saved.config, saved.data, saved.training_state(), with_state=False))
            return True
        return False

    def repair_metrics(self, history: list[dict[str, Any]]) -> str | None:
        """Rewrite metrics.jsonl from `history` (last.pt's, the truth) when they differ (a kill between
        the two writes); returns what was repaired, for a warning, or None when they matched."""
        try:
            rows: list[dict[str, Any]] | None = self.read_metrics()
        except SeqclfError:
            rows = None
        if rows == history:
            return None
        self.write_metrics(history)
        return (f"{self.metrics_path} did not match last.pt ({'damaged' if rows is None else len(rows)} rows, "
                f"{len(history)} epochs): rebuilt from last.pt's history")


def run_config_path(path: str | Path) -> Path:
    """A run directory's config.yaml (for `seqclf config diff`), or `path` itself (a YAML file or a
    shipped config's name)."""
    path = Path(path)
    return RunDir.open(path).config_path if path.is_dir() else path
