"""`seqclf eval`: score a checkpoint on its own data (the counting itself is seqclf.training.scoring; accuracy by
steps read and calibration, seqclf.use.trace)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from seqclf.config import (
    Config,
    apply_overrides,
    config_from_dict,
    keys_where,
    parse_overrides,
    to_dict,
)
from seqclf.data import pixels
from seqclf.data.datasets import Data
from seqclf.data.views import STEP_NAMES
from seqclf.errors import SeqclfError, TrainingError
from seqclf.model.classifier import SequenceClassifier, load_weights
from seqclf.store import checkpoint
from seqclf.training.devices import autocast as precision_context
from seqclf.training.prepare import prepare
from seqclf.training.scoring import score
from seqclf.use.trace import step_scores


def evaluate_checkpoint(path: str | Path, overrides: list[str] | tuple[str, ...] = (),
                        split: str = "test") -> dict[str, Any]:
    """Score a checkpoint on its own data (same view, permutation and normalization as training)."""
    if split not in ("test", "val"):
        raise SeqclfError(f"--split {split!r}: choose test or val")
    saved = checkpoint.read(path)
    cfg = eval_config(saved.config, overrides, path)
    ready = prepare(cfg, splits=(split,), meta=saved.data, source=path)
    meta = saved.data
    model = SequenceClassifier(ready.cfg.model, meta.input_size, meta.num_classes).to(ready.device)
    load_weights(model, saved.model, str(path))
    data = getattr(ready.data, split)
    result = score(model, data, meta.num_classes, precision_context(cfg.train, ready.device))
    if not math.isfinite(result["loss"]):
        finite = all(bool(torch.isfinite(p).all()) for p in model.parameters())
        raise TrainingError(f"{path}: the {split} loss is {result['loss']}: "
                            + ("the model's outputs overflow on this data" if finite else
                               "its weights hold NaN or infinite values (a diverged run)")
                            + "; no accuracy is reported for it")
    reading = step_scores(model, data, precision_context(cfg.train, ready.device))  # accuracy_by_step, calibration
    sequence = ready.cfg.data.sequence
    found = ready.data.pixels.get(split)
    return {"checkpoint": str(path), "split": split, **result, "class_names": list(meta.class_names),
            "sequence": sequence, "step": STEP_NAMES[sequence], **reading,
            "pixel_stats": {"trained": meta.pixels, "evaluated": found},
            "data_warnings": data_warnings(saved, ready.cfg, ready.data, split, result["n"])}


def data_warnings(saved: checkpoint.Checkpoint, cfg: Config, data: Data, split: str, n: int) -> list[str]:
    """How the data scored differs from the data the model was trained on (image size, pixel statistics
    where the checkpoint recorded them), in one sentence; [] when alike."""
    meta, trained_on = saved.data, saved.config.data
    found = data.pixels.get(split)
    if (meta.height, meta.width) != (data.height, data.width):
        trained, scored = f"{meta.height}x{meta.width} images", f"{data.height}x{data.width} images"
    elif meta.pixels is not None and found is not None and pixels.differ(meta.pixels, found, n):
        trained, scored = pixels.describe(meta.pixels), pixels.describe(found)
    else:
        return []
    return [f"{saved.path}: the data differ from the data it was trained on: trained on {trained_on.name} in "
            f"{trained_on.root} ({trained}), evaluating the {split} split in {cfg.data.root} ({scored}); the "
            f"accuracy is of a model on data it never learned. To score it on its own data, point data.root at "
            f"that data (--set data.root=DIR)"]


def eval_config(cfg: Config, overrides: list[str] | tuple[str, ...], source: str | Path) -> Config:
    """A checkpoint's config with eval's `--set` changes: where the data is and how to compute, never what is scored."""
    changes = parse_overrides(overrides)
    allowed = keys_where("eval")
    refused = sorted({key for key, _ in changes} - allowed)
    if refused:
        raise SeqclfError(f"eval --set: cannot change {', '.join(refused)} (it would change what is scored); "
                          f"eval accepts {', '.join(sorted(allowed))}")
    return config_from_dict(apply_overrides(to_dict(cfg), changes), f"{source} with --set")
