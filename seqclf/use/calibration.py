"""Calibration: does a confidence of 0.9 mean right 9 times in 10? Expected calibration error and the
reliability diagram's bins, over the top-class confidence of every example.

ECE = sum over bins b of (n_b / N) * |accuracy_b - confidence_b|, with BINS equal-width bins of the
confidence in [0, 1] (bin b holds (b/BINS, (b+1)/BINS]; the first also holds 0). Guo et al. (2017),
"On Calibration of Modern Neural Networks", use 15.
"""

from __future__ import annotations

from typing import Any

import numpy as np

BINS = 15  # equal-width confidence bins of the ECE and the reliability diagram


def calibration(confidence: np.ndarray, correct: np.ndarray, bins: int = BINS) -> dict[str, Any]:
    """confidence (N,) top-class probabilities, correct (N,) bools -> {"ece", "bins": [...]}.

    Each bin is {"lower", "upper", "n", "confidence" (mean), "accuracy"}; the means are null for an
    empty bin. The ECE of no examples is null.
    """
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    if confidence.shape != correct.shape or confidence.ndim != 1:
        raise ValueError(f"confidence and correct must be two (N,) arrays; got {confidence.shape}, {correct.shape}")
    # bin b holds (b/bins, (b+1)/bins]: ceil(c * bins) - 1, with 0 in the first bin
    index = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)  # (N,)
    n = len(confidence)
    rows, ece = [], 0.0
    for b in range(bins):
        chosen = index == b
        count = int(chosen.sum())
        mean_confidence = float(confidence[chosen].mean()) if count else None
        accuracy = float(correct[chosen].mean()) if count else None
        if count:
            ece += count / n * abs(accuracy - mean_confidence)  # type: ignore[operator]
        rows.append({"lower": b / bins, "upper": (b + 1) / bins, "n": count,
                     "confidence": mean_confidence, "accuracy": accuracy})
    return {"ece": ece if n else None, "bins": rows}
