"""Pixel statistics of a set of images: recorded at training, compared by eval and predict.

A model only knows the pixels it was trained on. `seqclf eval` of an MNIST model on Fashion-MNIST,
or `seqclf predict --no-preprocess` of dark ink on light paper, runs without a hitch and scores
near chance; these statistics say that the data differ, and how. All are of pixel / 255, in [0, 1]:
    mean, std     over every pixel of the images (before any normalization)
    background    the median of the images' border pixels: about 0 for light ink on black (MNIST),
                  about 1 for dark ink on white paper
"""

from __future__ import annotations

import math
from typing import Any

import torch

KEYS = ("mean", "std", "background")
MEAN_SLACK = 0.05  # means further apart than this (plus sampling slack for few images) are different data
STD_RATIO = 1.25  # stds further apart than this factor (either way) are different data
DARK = 0.5  # a background at or below this is dark, above it bright
FEW = 10  # fewer images than this are not compared: their statistics say little


def histogram(images: torch.Tensor) -> torch.Tensor:
    """(256,) float64 counts of each uint8 value in `images` (any shape)."""
    return torch.bincount(images.reshape(-1), minlength=256).double()


def mean_std(counts: torch.Tensor) -> tuple[float, float]:
    """Mean and (population) std of pixel / 255 from a histogram, exact in float64."""
    values = torch.arange(256, dtype=torch.float64) / 255
    total = counts.sum()
    mean = (counts * values).sum() / total
    return float(mean), float(((counts * (values - mean) ** 2).sum() / total).sqrt())


def border(images: torch.Tensor) -> torch.Tensor:
    """(N, H, W) uint8 -> (N, 2H + 2W) the pixels of each image's outer rows and columns (corners twice)."""
    return torch.cat([images[:, 0], images[:, -1], images[:, :, 0], images[:, :, -1]], dim=1)


def stats(images: torch.Tensor) -> dict[str, float]:
    """{"mean", "std", "background"} of (N, H, W) uint8 images; N > 0."""
    mean, std = mean_std(histogram(images))
    edge = histogram(border(images))  # the median from the histogram: no sort of millions of pixels
    background = int(torch.searchsorted(edge.cumsum(0), edge.sum() / 2))
    return {"mean": round(mean, 6), "std": round(std, 6), "background": round(background / 255, 6)}


def shades(images: torch.Tensor) -> list[str | None]:
    """(N, H, W) uint8 -> each image's background shade, "dark" or "bright", where its border's median
    pixel and its whole median pixel agree; None where they do not (a mark touching two edges, a garment
    filling the frame), so that no dataset image of the right polarity is taken for a negative."""
    flat = images.reshape(len(images), -1)
    edge, whole = border(images).median(dim=1).values, flat.median(dim=1).values  # (N,) uint8 each
    return [shade(e / 255) if shade(e / 255) == shade(w / 255) else None for e, w in zip(edge.tolist(), whole.tolist())]


def well_formed(value: Any) -> bool:
    """A stats dict as stats() makes it: KEYS, each a finite number in [0, 1]."""
    return isinstance(value, dict) and set(value) == set(KEYS) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and 0 <= v <= 1
        for v in value.values())


def shade(background: float) -> str:
    return "dark" if background <= DARK else "bright"


def describe(found: dict[str, float]) -> str:
    """'pixel mean 0.13, std 0.31, dark background'."""
    return f"pixel mean {found['mean']:.2f}, std {found['std']:.2f}, {shade(found['background'])} background"


def differ(trained: dict[str, float], found: dict[str, float], n: int) -> bool:
    """Whether `found`, of n images, is unlike the training images' `trained` beyond sampling noise.

    A few images' statistics wander (one Fashion-MNIST image's pixel mean lies anywhere from 0.05 to
    0.7; across images it spreads by about 0.13), so fewer than FEW images are not judged at all and
    the slack on mean and std shrinks as n grows. The background must be of the same shade.
    """
    if n < FEW:
        return False
    noise = 1 / math.sqrt(n)
    ratio = (found["std"] + 1e-6) / (trained["std"] + 1e-6)
    return (abs(found["mean"] - trained["mean"]) > MEAN_SLACK + 0.5 * noise
            or not 1 / (STD_RATIO + noise) <= ratio <= STD_RATIO + noise
            or shade(found["background"]) != shade(trained["background"]))
