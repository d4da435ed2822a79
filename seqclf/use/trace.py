"""The reading trace: the class probabilities after each step a model reads (row, column or pixel).

A unidirectional model's probability after step k is its prediction on the first k steps alone,
computed in one pass (SequenceClassifier.logits_by_step); a bidirectional model gets the same meaning
by prefix runs (the model run on the first k steps, for every k: T passes). `seqclf trace` traces a
few inputs; `seqclf eval` counts, over a whole split, how accurate the model would be if reading
stopped after k steps (accuracy_by_step), and how well its confidence is calibrated.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from seqclf.data.datasets import Split
from seqclf.data.views import STEP_NAMES
from seqclf.errors import SeqclfError
from seqclf.training.scoring import EVAL_BATCH_SIZE
from seqclf.use.calibration import calibration

# A bidirectional model's accuracy_by_step costs T prefix runs over the split: about T/2 times a whole
# evaluation. Rows and columns (T = 28) are worth it; pixels (T = 784) are not: eval leaves it out.
PREFIX_RUNS_MAX_STEPS = 64


def method(model: nn.Module) -> str:
    """How the trace is computed: "one pass" (unidirectional) or "prefix runs" (bidirectional)."""
    return "prefix runs" if getattr(model, "directions", 1) == 2 else "one pass"


@torch.no_grad()
def step_scores(model: nn.Module, split: Split, autocast: Any = None) -> dict[str, Any]:
    """Over a split, in eval's batches: {"accuracy_by_step" (T floats, or None), "accuracy_by_step_note",
    "calibration"} (see seqclf.use.calibration). accuracy_by_step[-1] is eval's accuracy exactly: the last
    step's logits are forward()'s own. None, with the reason in the note, for a bidirectional model
    over more than PREFIX_RUNS_MAX_STEPS steps."""
    was_training = model.training
    model.eval()
    steps = split.x.shape[1]
    by_step = method(model) == "one pass" or steps <= PREFIX_RUNS_MAX_STEPS
    correct_by_step = torch.zeros(steps, dtype=torch.int64, device=split.y.device)
    confidence, correct = [], []
    for start in range(0, len(split), EVAL_BATCH_SIZE):
        x = split.x[start:start + EVAL_BATCH_SIZE]  # (B, T, F)
        y = split.y[start:start + EVAL_BATCH_SIZE]  # (B,)
        with autocast if autocast is not None else contextlib.nullcontext():
            logits = model.logits_by_step(x) if by_step else model(x).unsqueeze(1)  # (B, T or 1, C)
        logits = logits.float()
        if by_step:
            correct_by_step += (logits.argmax(2) == y.unsqueeze(1)).sum(0)  # (T,)
        top = torch.softmax(logits[:, -1], dim=1).max(1)  # values and indices, (B,) each
        confidence.append(top.values.cpu())
        correct.append((top.indices == y).cpu())
    model.train(was_training)
    n = max(len(split), 1)
    note = None if by_step else (f"left out: a bidirectional model needs {steps} prefix runs over the split "
                                 f"(more than {PREFIX_RUNS_MAX_STEPS}); `seqclf trace` shows a few inputs")
    return {"accuracy_by_step": [int(c) / n for c in correct_by_step.tolist()] if by_step else None,
            "accuracy_by_step_note": note,
            "calibration": calibration(torch.cat(confidence).numpy() if confidence else np.zeros(0),
                                       torch.cat(correct).numpy() if correct else np.zeros(0, bool))}


def steps_to_reach(accuracy_by_step: list[float] | None, target: float) -> int | None:
    """The fewest steps read (1-based) whose accuracy is at least `target`, or None."""
    return next((k for k, accuracy in enumerate(accuracy_by_step or [], 1) if accuracy >= target), None)


def decided_at(probabilities: np.ndarray) -> int:
    """(T, C) probabilities of one input -> the first step (1-based) from which the final class stays on top."""
    top = probabilities.argmax(1)  # (T,)
    changed = np.flatnonzero(top != top[-1])
    return int(changed[-1]) + 2 if len(changed) else 1


def trace_records(probabilities: np.ndarray, names: list[str], class_names: list[str]) -> list[dict[str, Any]]:
    """(N, T, C) probabilities -> one record per input: the final guess, where it was decided, every step."""
    records = []
    for name, rows in zip(names, probabilities):
        label = int(rows[-1].argmax())
        records.append({"input": name, "predicted_label": label, "predicted_class": class_names[label],
                        "probability": float(rows[-1, label]), "decided_at": decided_at(rows),
                        "probabilities": rows.tolist(),  # (T, C): after step 1, 2, ..., T
                        "label": label, "class": class_names[label]})  # deprecated names, as in predict's records
    return records


def trace_files(checkpoint: str | Path, sources: list[Any], preprocess: bool = True,
                batch_size: int = EVAL_BATCH_SIZE, device: str | None = None) -> dict[str, Any]:
    """What `seqclf trace` prints: {"checkpoint", "sequence", "step", "steps", "method", "class_names",
    "traces": [{"input", "predicted_label", "predicted_class", "probability", "decided_at", "probabilities" (T, C),
    and, deprecated as in predict, "label" and "class"}],
    "errors": [{"input", "error"}], "images" (N, H, W) uint8 (for pictures; not JSON)}.

    Inputs are read as `seqclf predict` reads them; bad ones do not stop the good ones.
    """
    from seqclf.data.images import ImageError, read_inputs
    from seqclf.training.devices import configure_threads
    from seqclf.use.predict import Predictor

    if batch_size < 1:
        raise ImageError(f"--batch-size {batch_size}: give a positive number of images per batch")
    predictor = Predictor.from_checkpoint(checkpoint, device)
    configure_threads(predictor.cfg.train.num_threads)  # as eval and predict do
    inputs = read_inputs(sources, predictor.height, predictor.width, preprocess)
    images = inputs.stacked(predictor.height, predictor.width)  # (N, H, W) uint8
    probabilities = torch.softmax(predictor.logits_by_step(images, batch_size), dim=2).numpy()  # (N, T, C)
    sequence = predictor.cfg.data.sequence
    return {"checkpoint": str(checkpoint), "sequence": sequence, "step": STEP_NAMES[sequence],
            "steps": predictor.meta.seq_len, "method": method(predictor.model),
            "class_names": predictor.class_names,
            "traces": trace_records(probabilities, inputs.names, predictor.class_names),
            "errors": [{"input": name, "error": why} for name, why in inputs.errors], "images": images}


def shown_steps(steps: int, every: int = 0) -> list[int]:
    """The steps (1-based) a table shows: every `every`-th (0: about 14 in all), always the last."""
    if every < 0:
        raise SeqclfError(f"--every {every}: give a positive number of steps, or 0 for about 14 rows")
    every = every or max(1, -(-steps // 14))
    return sorted({*range(every, steps + 1, every), steps})
