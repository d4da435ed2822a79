"""A dataset ready for training: the seeded train/val split, normalization, the sequence view, each
split moved to the device once (`load_data` -> `Data`). The files are seqclf.data.files' business,
the views seqclf.data.views'.

Everything stays a uint8 tensor until the very end: slicing, the seeded split and the
sequence views are index operations on bytes, then each split is moved to the device once
and scaled to float32 there. No per-image PIL or transform work.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from seqclf.config import DataConfig
from seqclf.config.limits import check_memory
from seqclf.data import pixels
from seqclf.data.files import REFIT, digest, label_warnings, load_arrays
from seqclf.data.idx import DataError
from seqclf.data.views import permutation, to_sequences, view_shape

SPLITS = ("train", "val", "test")
# ---------------------------------------------------------------- class names

DIGITS = tuple(str(k) for k in range(10))
CLASS_NAMES = {
    "mnist": DIGITS,
    "fashion_mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                      "Ankle boot"),
    # KMNIST's ten cursive hiragana, romanized as in its class map (kmnist_classmap.csv)
    "kmnist": ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
}


def class_names(name: str, num_classes: int) -> list[str]:
    """The name of each label: the dataset's own ten, or the label itself ("0", "1", ...) for `idx`."""
    known = CLASS_NAMES.get(name)
    if known is not None and len(known) == num_classes:
        return list(known)
    return [str(k) for k in range(num_classes)]


# ---------------------------------------------------------------- splits on the device


@dataclass
class Split:
    x: torch.Tensor  # (N, T, F) float32 on the device
    y: torch.Tensor  # (N,) int64 on the device

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class Data:
    train: Split | None
    val: Split | None
    test: Split | None
    input_size: int  # F
    seq_len: int  # T
    num_classes: int
    mean: float  # normalization actually applied: x = (pixel / 255 - mean) / std
    std: float  # (0.0, 1.0) when data.normalize is false
    permutation: torch.Tensor | None  # (H*W,) int64 for permuted_pixels, else None
    height: int  # H, W: the images' size before the view
    width: int
    class_names: list[str]  # the name of each label
    # what the run trains on: {"train": n, "val": n, "test": n, "digest": hex of the four files' contents}
    fingerprint: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)  # for the caller to show, e.g. label_warnings
    # seqclf.data.pixels.stats of each split loaded ("train", "val", "test"), of its uint8 images
    pixels: dict[str, dict[str, float]] = field(default_factory=dict)


# each named dataset's training file (60,000 images): the mean and std of its pixels / 255
KNOWN_STATS = {"mnist": (0.1307, 0.3081), "fashion_mnist": (0.2860, 0.3530), "kmnist": (0.1918, 0.3483)}
TITLES = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST", "kmnist": "KMNIST"}


def misnamed(name: str, train_images: torch.Tensor) -> list[str]:
    """A warning when a named dataset's training file has another named dataset's pixel statistics (its
    files lie flat under data.root, so only their contents can tell): the class names come from data.name."""
    if name not in KNOWN_STATS or len(train_images) != 60000:
        return []
    mean, std = _stats(train_images)
    for other, (m, s) in KNOWN_STATS.items():
        if other != name and abs(mean - m) < 5e-4 and abs(std - s) < 5e-4:
            return [f"data.name={name}, but the training file's pixels (mean {mean:.4f}, std {std:.4f}) look like "
                    f"{TITLES[other]}'s ({m}, {s}), not {TITLES[name]}'s {KNOWN_STATS[name]}: did you mean "
                    f"data.name={other}? (the class names come from data.name)"]
    return []


def _capped(cfg: DataConfig, available: int, n_train: int) -> list[str]:
    """A warning when data.max_train asks for more training examples than there are."""
    if cfg.max_train is None or cfg.max_train <= available:
        return []
    return [f"data.max_train={cfg.max_train} asks for more than the {available} training examples there are "
            f"({n_train} in the training file less data.val_size={cfg.val_size}): training on those {available}"]


def _warnings(cfg: DataConfig, arrays: Any, labels: torch.Tensor, n_train: int | None) -> list[str]:
    """What the caller shows about the data read: odd labels, another dataset's files, data.max_train
    above what there is (`n_train`: the training examples, when the train split was asked for)."""
    warnings = label_warnings(labels) if cfg.name == "idx" else []
    if arrays.train_images is not None:
        warnings += misnamed(cfg.name, arrays.train_images)
        if n_train is not None:
            warnings += _capped(cfg, n_train, len(arrays.train_images))
    return warnings


def _stats(images: torch.Tensor) -> tuple[float, float]:
    """Mean and (population) std of images / 255, exact in float64 from a 256-bin histogram."""
    mean, std = pixels.mean_std(pixels.histogram(images))
    # constant images (std 0) would divide by zero; leave their scale alone instead
    return mean, (std if std > 0 else 1.0)


def _normalization(cfg: DataConfig, stats: tuple[float, float] | None,
                   picked: dict[str, torch.Tensor]) -> tuple[float, float]:
    """(mean, std) applied to pixels scaled to [0, 1]: a checkpoint's, else the train portion's."""
    if not cfg.normalize:
        return 0.0, 1.0
    if stats is not None:
        return float(stats[0]), float(stats[1])
    return _stats(picked["train"])


def _check_memory(splits: tuple[str, ...], pixels: int) -> None:
    """The splits as float32 sequences (4 bytes a pixel) must fit in this machine's memory."""
    fix = "lower data.max_test" if splits == ("test",) else "lower data.max_train or data.max_test"
    check_memory(f"the {'/'.join(splits)} data as float32", 4 * pixels, fix, DataError)


def split_indices(cfg: DataConfig, seed: int, n_train: int, for_checkpoint: bool = False) -> dict[str, torch.Tensor]:
    """{"train", "val"}: (n,) int64 indices into the training file's images.

    Validation first: a seeded shuffle of the training file, the same on every run; its first
    val_size examples are the validation split, the next max_train (all the rest when null) train.
    `for_checkpoint`: the data must fit a checkpoint, so the fix is data.root, not data.val_size.
    """
    order = torch.randperm(n_train, generator=torch.Generator().manual_seed(seed))
    if cfg.val_size >= n_train:
        fix = REFIT if for_checkpoint else "lower data.val_size"
        raise DataError(f"data.val_size ({cfg.val_size}) must be smaller than the training file, which has "
                        f"{n_train} examples; {fix}")
    return {"val": order[:cfg.val_size], "train": order[cfg.val_size:][:cfg.max_train]}


def split_images(cfg: DataConfig, seed: int, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The val or test split's images (N, H, W) uint8 and labels (N,) int64, as load_data picks them."""
    arrays = load_arrays(cfg, ("test",) if split == "test" else ("train",))
    if split == "test":
        n_test = len(arrays.test_images) if cfg.max_test is None else cfg.max_test
        return arrays.test_images[:n_test], arrays.test_labels[:n_test]
    index = split_indices(cfg, seed, len(arrays.train_images))[split]
    return arrays.train_images[index], arrays.train_labels[index]


def load_data(cfg: DataConfig, seed: int, device: torch.device | str = "cpu", *,
              splits: tuple[str, ...] = SPLITS, stats: tuple[float, float] | None = None,
              perm: torch.Tensor | None = None) -> Data:
    """The requested splits as float32 sequences on `device`; deterministic given cfg and seed.

    `stats` and `perm` come from a checkpoint so that eval sees exactly what training saw.
    """
    unknown = [s for s in splits if s not in SPLITS]
    if unknown:
        raise ValueError(f"unknown splits {unknown}; valid: {', '.join(SPLITS)}")
    # only the files a split needs: scoring the test split with a checkpoint's stats reads t10k-* alone
    from_train = any(s in splits for s in ("train", "val")) or (cfg.normalize and stats is None)
    parts = ("train",) * from_train + ("test",) * ("test" in splits)
    for_checkpoint = stats is not None  # stats given: the data must fit a checkpoint, whose keys stay as they are
    arrays = load_arrays(cfg, parts, for_checkpoint)
    _, h, w = (arrays.train_images if from_train else arrays.test_images).shape
    indices = split_indices(cfg, seed, len(arrays.train_images), for_checkpoint) if from_train else {}
    # gathered once: normalization stats always come from the train portion, requested or not
    picked = {name: arrays.train_images[i] for name, i in indices.items()
              if name in splits or (name == "train" and cfg.normalize and stats is None)}  # (n, H, W) uint8

    mean, std = _normalization(cfg, stats, picked)
    if cfg.sequence == "permuted_pixels":
        perm = perm if perm is not None else permutation(h * w, cfg.permutation_seed)
    else:
        perm = None

    def build(images: torch.Tensor, labels: torch.Tensor) -> Split:
        # the view is an index operation on bytes; move 1 byte per pixel, then scale on the device
        x = to_sequences(images, cfg.sequence, perm).to(device).float().div_(255)  # (N, T, F)
        if cfg.normalize:
            x.sub_(mean).div_(std)
        return Split(x, labels.to(device))

    n_test = 0 if arrays.test_images is None else min(len(arrays.test_images), cfg.max_test or len(arrays.test_images))
    if torch.device(device).type == "cpu":  # float32 sequences: 4 bytes a pixel (an accelerator has its own memory)
        _check_memory(splits, sum(n_test if name == "test" else len(indices[name]) for name in splits) * h * w)
    built: dict[str, Split | None] = dict.fromkeys(SPLITS)
    for name in ("train", "val"):
        if name in splits:
            built[name] = build(picked[name], arrays.train_labels[indices[name]])
    if "test" in splits:
        built["test"] = build(arrays.test_images[:n_test], arrays.test_labels[:n_test])

    seq_len, input_size = view_shape(cfg.sequence, h, w)
    # over the whole files, so max_train/max_test never change the model's output size
    labels = torch.cat([y for y in (arrays.train_labels, arrays.test_labels) if y is not None])  # never empty
    num_classes = len(arrays.class_names) if arrays.class_names else int(labels.max()) + 1
    fingerprint = None  # of the whole dataset: only when both files were read (training, --resume)
    if arrays.train_images is not None and arrays.test_images is not None:
        sizes = {"train": len(indices["train"]), "val": len(indices["val"]), "test": n_test}
        fingerprint = {**sizes, "digest": digest(arrays)}
    loaded = {name: picked[name] for name in ("train", "val") if name in splits}
    if "test" in splits:
        loaded["test"] = arrays.test_images[:n_test]
    found = {name: pixels.stats(images) for name, images in loaded.items() if len(images)}
    warnings = _warnings(cfg, arrays, labels, len(indices["train"]) if "train" in splits else None)
    return Data(built["train"], built["val"], built["test"], input_size, seq_len, num_classes, mean, std, perm,
                h, w, arrays.class_names or class_names(cfg.name, num_classes), fingerprint, warnings, found)


