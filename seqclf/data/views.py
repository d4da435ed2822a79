"""Sequence views: how an image (H, W) becomes a sequence of T steps of F features (rows, columns,
pixels, permuted pixels). One home for the view's (T, F)."""

from __future__ import annotations

import torch

from seqclf.data.idx import DataError

SEQUENCES = ("rows", "columns", "pixels", "permuted_pixels")
STEP_NAMES = {"rows": "row", "columns": "column", "pixels": "pixel", "permuted_pixels": "pixel"}  # one step read


def permutation(length: int, seed: int) -> torch.Tensor:
    """A fixed bijection of range(length), (length,) int64, from its own seeded generator."""
    return torch.randperm(length, generator=torch.Generator().manual_seed(seed))


def to_sequences(images: torch.Tensor, sequence: str, perm: torch.Tensor | None = None) -> torch.Tensor:
    """(N, H, W) images -> (N, T, F) sequences, same dtype; step t is what the model reads at time t."""
    n, h, w = images.shape
    if sequence == "rows":
        return images  # (N, H, W): step t = row t, left to right
    if sequence == "columns":
        return images.transpose(1, 2).contiguous()  # (N, W, H): step t = column t, top to bottom
    if sequence == "pixels":
        return images.reshape(n, h * w, 1)  # (N, H*W, 1): row-major
    if sequence == "permuted_pixels":
        if perm is None:
            raise ValueError("sequence=permuted_pixels needs a permutation (see permutation())")
        if perm.shape != (h * w,) or not torch.equal(perm.cpu().long().sort().values, torch.arange(h * w)):
            raise DataError(f"the pixel permutation must be a bijection of range({h * w}) for {h}x{w} images, "
                            f"got shape {tuple(perm.shape)}")
        return images.reshape(n, h * w)[:, perm.to(images.device, torch.long)].unsqueeze(-1)  # (N, H*W, 1)
    raise DataError(f"data.sequence: {sequence!r} is not one of: {', '.join(SEQUENCES)}")


def view_shape(sequence: str, height: int = 28, width: int = 28) -> tuple[int, int]:
    """(T, F) of a view of height x width images: rows -> (H, W), columns -> (W, H), (permuted) pixels -> (H*W, 1)."""
    shapes = {"rows": (height, width), "columns": (width, height), "pixels": (height * width, 1),
              "permuted_pixels": (height * width, 1)}
    if sequence not in shapes:
        raise DataError(f"data.sequence: {sequence!r} is not one of: {', '.join(SEQUENCES)}")
    return shapes[sequence]
