"""A run's record on disk: config.yaml, metrics.jsonl, summary.json, best.pt, last.pt, TensorBoard.

The training loop says what happened (an epoch ended, the run finished or stopped); the RunLog
writes it. Under torchrun only rank 0 has a RunLog that writes (`is_main`); the others' calls
do nothing. Every file is written atomically.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from seqclf.config import Config, OutputConfig
from seqclf.errors import SeqclfError
from seqclf.store.rundir import STATUSES, RunDir


def tensorboard_writer(output: OutputConfig, run_dir: RunDir | None) -> Any:
    """A SummaryWriter when output.tensorboard is on; run_dir=None only checks that one can be made."""
    if not output.tensorboard:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise SeqclfError('output.tensorboard: needs the tensorboard package; install it with '
                          'pip install "seqclf[tensorboard]" or set output.tensorboard=false') from None
    return SummaryWriter(str(run_dir.tensorboard)) if run_dir is not None else None


class RunLog:
    def __init__(self, run_dir: RunDir | Path, cfg: Config, is_main: bool = True,
                 summary_extra: dict[str, Any] | None = None) -> None:
        self.run_dir, self.cfg, self.is_main = RunDir(run_dir), cfg, is_main
        self.summary_extra = dict(summary_extra or {})  # e.g. {"study": ..., "trial": ...} for a search's trial
        self._writer: Any = None
        self.status: str | None = None  # the status in summary.json, once this RunLog has written one
        # the progress the last summary described: written after the files it describes, so they hold it
        self._described: Any = None

    def write_config(self) -> None:
        if self.is_main:
            self.run_dir.write_config(self.cfg)

    def save_best(self, payload: dict[str, Any]) -> None:
        if self.is_main:
            self.run_dir.save_best(payload)

    def save_last(self, payload: dict[str, Any]) -> None:
        if self.is_main:
            self.run_dir.save_last(payload)

    def epoch(self, history: list[dict[str, Any]]) -> None:
        """metrics.jsonl rewritten whole with every finished epoch; the last row also to TensorBoard."""
        if not self.is_main:
            return
        self.run_dir.write_metrics(history)
        if self.cfg.output.tensorboard:
            if self._writer is None:
                self._writer = tensorboard_writer(self.cfg.output, self.run_dir)
            row = history[-1]
            for key, value in row.items():
                if key != "epoch":
                    self._writer.add_scalar(key, value, row["epoch"])
            self._writer.flush()

    def summary(self, status: str, progress: Any, parameters: int, test: dict[str, Any] | None = None,
                stopped_early: bool = False) -> dict[str, Any]:
        """summary.json for `status`; test scores are kept from the previous summary unless given;
        `stopped_early`: train.patience ended it (a finished run) before its last epoch."""
        assert status in STATUSES, status
        previous = (self.run_dir.read_summary() or {}) if self.is_main else {}
        summary = {
            "run_dir": str(self.run_dir), "epochs": progress.epoch,
            "checkpoint": str(self.run_dir.best) if progress.best_epoch else None,  # best.pt, once an epoch made it
            "val_accuracy": progress.best_accuracy if progress.best_epoch else None,
            "best_epoch": progress.best_epoch,
            "test_accuracy": test["accuracy"] if test else previous.get("test_accuracy"),
            "test_loss": test["loss"] if test else previous.get("test_loss"),
            "seconds": progress.total_seconds, "parameters": parameters, "status": status,
            "stopped_early": stopped_early, "stopped_epoch": progress.epoch if stopped_early else None,
            **self.summary_extra,
        }
        if self.is_main:
            self.run_dir.write_summary(summary)
        self.status = status
        self._described = SimpleNamespace(epoch=progress.epoch, best_accuracy=progress.best_accuracy,
                                           best_epoch=progress.best_epoch, total_seconds=progress.total_seconds)
        return summary

    def ended(self, status: str, progress: Any, parameters: int) -> dict[str, Any]:
        """summary.json when a run stops on an exception: the epochs the last summary described, not the
        progress in memory, which may be ahead of the files (a full disk while writing best.pt of an epoch
        must not leave a summary of that epoch that no file holds)."""
        return self.summary(status, self._described or progress, parameters)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

