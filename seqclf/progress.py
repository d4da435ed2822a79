"""The progress bar's parts: what the training loop advances (a bar on a terminal, nothing otherwise)
and the column that gives the whole run's time left. seqclf.console.Output.progress hands them out."""

from __future__ import annotations

from typing import Any

from rich.progress import Progress, ProgressColumn
from rich.text import Text


class NoProgress:
    def advance(self, steps: int = 1) -> None:
        pass

    def show(self, sums: dict[str, Any], batch_size: int) -> None:
        pass

    def update(self, **fields: Any) -> None:
        pass


class Advance:
    def __init__(self, bar: Progress, task: Any) -> None:
        self.bar, self.task = bar, task

    def advance(self, steps: int = 1) -> None:
        self.bar.advance(self.task, steps)

    def update(self, **fields: Any) -> None:
        self.bar.update(self.task, **fields)

    def show(self, sums: dict[str, Any], batch_size: int) -> None:
        """Live mean loss and accuracy of the epoch so far from the loop's sums (0-dim tensors: "loss" summed
        over examples, "correct", "steps"); a host sync, so the loop calls it only where it syncs anyway."""
        seen = max(float(sums["steps"]) * batch_size, 1.0)
        self.update(live=f"loss {float(sums['loss']) / seen:.4f} acc {float(sums['correct']) / seen:.4f}")


class RunTimeLeft(ProgressColumn):
    """Time left for the whole run: this epoch's remaining steps plus the later epochs', at the current speed."""

    def __init__(self, steps_after: int) -> None:
        super().__init__()
        self.steps_after = steps_after

    def render(self, task: Any) -> Text:
        if not task.speed or task.remaining is None:
            return Text("run -:--:-- left", style="progress.remaining")
        seconds = int((task.remaining + self.steps_after) / task.speed)
        return Text(f"run {seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d} left",
                    style="progress.remaining")
