"""Real handwriting in MNIST's format, offline: scikit-learn's bundled digits as four IDX files.

scikit-learn ships the UCI "Optical Recognition of Handwritten Digits" test set (1797 digits
scanned from forms filled in by 43 writers, 8x8 pixels, values 0..16). Each digit is upsampled
to 32x32 and then made as MNIST was: ink cropped to its bounding box, the longer side scaled to
20 pixels keeping the aspect ratio, placed in 28x28 by its centre of mass (seqclf.data.images.mnist_style).
A seeded 300 digits are the test split; the rest are the training split, plus --augment
copies of each with a small random rotation, shear and scale (before the MNIST step).

    pip install scikit-learn
    python scripts/digits_to_idx.py data/uci-digits --augment 6
    seqclf train --config configs/lstm.yaml --set data.name=idx --set data.root=data/uci-digits \
        --set data.val_size=500
"""

from __future__ import annotations

import argparse
import gzip
from pathlib import Path

import numpy as np
from PIL import Image

from seqclf.data.images import mnist_style

TEST_SIZE = 300


def write_idx(path: Path, array: np.ndarray) -> None:
    """IDX of unsigned bytes: magic 0x000008<ndim>, the dims as big-endian int32, the data."""
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">i4").tobytes()
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def to_mnist(digit: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    """(8, 8) values 0..16 -> (28, 28) uint8; with rng, a random small affine distortion first."""
    image = Image.fromarray((digit * (255 / 16)).astype(np.float32), "F").resize((32, 32), Image.Resampling.BICUBIC)
    if rng is not None:
        angle, shear, scale = rng.uniform(-12, 12), rng.uniform(-0.2, 0.2), rng.uniform(0.85, 1.15)
        big = image.resize((64, 64), Image.Resampling.BILINEAR)  # room to turn without clipping corners
        theta = np.deg2rad(angle)
        a, b = np.cos(theta) / scale, (np.sin(theta) + shear) / scale
        c, d = -np.sin(theta) / scale, np.cos(theta) / scale
        centre = 32.0
        matrix = (a, b, centre - a * centre - b * centre, c, d, centre - c * centre - d * centre)
        image = big.transform((64, 64), Image.Transform.AFFINE, matrix, Image.Resampling.BILINEAR)
    return mnist_style(np.clip(np.asarray(image, dtype=np.float32), 0, 255))


def held_out(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The test split's digits as scikit-learn holds them: (300, 8, 8) values 0..16 and (300,) labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    test = np.random.default_rng(seed).permutation(len(digits.target))[:TEST_SIZE]
    return digits.images[test], digits.target[test]


def main() -> None:
    from sklearn.datasets import load_digits

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", type=Path, help="folder for the four IDX files (.gz)")
    parser.add_argument("--augment", type=int, default=6, help="distorted copies of each training digit")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    digits = load_digits()
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(digits.target))
    test, train = order[:TEST_SIZE], order[TEST_SIZE:]
    images = {"t10k": [to_mnist(digits.images[i]) for i in test]}
    labels = {"t10k": list(digits.target[test])}
    images["train"] = [to_mnist(digits.images[i]) for i in train]
    labels["train"] = list(digits.target[train])
    for _ in range(args.augment):
        images["train"] += [to_mnist(digits.images[i], rng) for i in train]
        labels["train"] += list(digits.target[train])
    shuffle = rng.permutation(len(labels["train"]))
    images["train"] = [images["train"][i] for i in shuffle]
    labels["train"] = [labels["train"][i] for i in shuffle]
    args.output.mkdir(parents=True, exist_ok=True)
    for split in ("train", "t10k"):
        write_idx(args.output / f"{split}-images-idx3-ubyte.gz", np.stack(images[split]))
        write_idx(args.output / f"{split}-labels-idx1-ubyte.gz", np.asarray(labels[split]))
        print(f"{split}: {len(labels[split])} digits")


if __name__ == "__main__":
    main()
