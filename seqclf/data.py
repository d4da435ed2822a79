"""MNIST-format data: read IDX files (plain or .gz, flat or torchvision's layout), download
with torchvision when allowed, split train/val by seed, and turn images into sequences.

Everything stays a uint8 tensor until the very end: slicing, the seeded split and the
sequence views are index operations on bytes, then each split is moved to the device once
and scaled to float32 there. No per-image PIL or transform work.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seqclf.config import DataConfig
from seqclf.errors import SeqclfError


class DataError(SeqclfError):
    """A data problem the user can fix: missing, corrupt or inconsistent files (exit 2)."""


TORCHVISION_NAMES = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "kmnist": "KMNIST"}
FILES = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
         "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}
SEQUENCES = ("rows", "columns", "pixels", "permuted_pixels")
SPLITS = ("train", "val", "test")

# IDX magic: two zero bytes, a type code (0x08 = unsigned byte), the number of dimensions.
_VALID_MAGIC = "0x00000803 (images, 3 dims) or 0x00000801 (labels, 1 dim)"


# ---------------------------------------------------------------- files


def read_idx(path: Path) -> torch.Tensor:
    """One IDX file (plain, or gzip when the name ends in .gz) as a uint8 tensor of its dims."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError; a cut .gz is an EOFError
        raise DataError(f"{path}: cannot be read as {'gzip' if path.suffix == '.gz' else 'a file'}: {exc}") from None
    if len(raw) < 4:
        raise DataError(f"{path}: truncated: {len(raw)} bytes, too short for the 4-byte IDX magic")
    if raw[:3] != b"\x00\x00\x08":
        raise DataError(f"{path}: not an IDX file of unsigned bytes: magic 0x{raw[:4].hex()}; valid: {_VALID_MAGIC}")
    ndim = raw[3]
    if ndim not in (1, 3):
        raise DataError(f"{path}: {ndim} dims (magic 0x{raw[:4].hex()}); valid: {_VALID_MAGIC}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated: {len(raw)} bytes, too short for its {header}-byte header")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    expected, found = int(np.prod(dims)), len(raw) - header
    if found < expected:
        raise DataError(f"{path}: truncated: the header promises {dims} = {expected} bytes of data, found {found}")
    if found > expected:
        raise DataError(f"{path}: {found - expected} bytes more than its header's {dims} = {expected} bytes of data")
    # frombuffer views the immutable bytes; copy so torch owns a writable array
    return torch.from_numpy(np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy())


def _candidates(cfg: DataConfig, filename: str) -> list[Path]:
    """Where a file may lie, in the order tried: torchvision's layout first, then flat."""
    root = Path(cfg.root).expanduser()
    folders = [root] if cfg.name == "idx" else [root / TORCHVISION_NAMES[cfg.name] / "raw", root]
    return [folder / (filename + ext) for folder in folders for ext in ("", ".gz")]  # plain reads faster


def locate(cfg: DataConfig) -> dict[str, Path] | None:
    """The path of each of FILES' four files, or None when any is missing."""
    found = {}
    for key, filename in FILES.items():
        path = next((p for p in _candidates(cfg, filename) if p.is_file()), None)
        if path is None:
            return None
        found[key] = path
    return found


@dataclass
class Arrays:
    train_images: torch.Tensor  # (N, H, W) uint8
    train_labels: torch.Tensor  # (N,) int64
    test_images: torch.Tensor  # (M, H, W) uint8
    test_labels: torch.Tensor  # (M,) int64


def _missing(cfg: DataConfig, reason: str) -> DataError:
    looked = "\n".join(f"  {p}" for name in FILES.values() for p in _candidates(cfg, name))
    online = ("" if cfg.name == "idx" else ", or run with network access (data.download is true)" if cfg.download
              else ", or go online with --set data.download=true")
    return DataError(
        f"dataset {cfg.name!r}: {reason}. Looked in:\n{looked}\n"
        f"Fix: set data.root to a folder with the four IDX files (plain or .gz), e.g. "
        f"`--set data.name=fashion_mnist --set data.root=/usr/share/datasets/fashion-mnist` "
        f"after `apt-get install dataset-fashion-mnist`{online}.")


def _download(cfg: DataConfig) -> None:
    """torchvision writes ROOT/<Name>/raw/*; every failure (offline, bad mirror) is a DataError."""
    try:
        import torchvision.datasets

        dataset = getattr(torchvision.datasets, TORCHVISION_NAMES[cfg.name])
        # torchvision prints progress to stdout, which belongs to --json output: send it to stderr
        with contextlib.redirect_stdout(sys.stderr):
            for train in (True, False):
                dataset(str(Path(cfg.root).expanduser()), train=train, download=True)
    except (ImportError, OSError, RuntimeError, ValueError) as exc:  # URLError is an OSError
        detail = " ".join(str(exc).split())[:300] or type(exc).__name__  # torchvision's errors span lines
        raise _missing(cfg, f"not found, and the download failed: {detail}") from None


def load_arrays(cfg: DataConfig) -> Arrays:
    """The four arrays, downloading first if allowed, checked for consistency."""
    paths = locate(cfg)
    if paths is None and cfg.download and cfg.name != "idx":
        _download(cfg)
        paths = locate(cfg)
    if paths is None:
        raise _missing(cfg, "the four IDX files were not found" + ("" if cfg.download else " (data.download is false)"))
    t = {key: read_idx(path) for key, path in paths.items()}
    for split in ("train", "test"):
        images, labels = t[f"{split}_images"], t[f"{split}_labels"]
        image_path, label_path = paths[f"{split}_images"], paths[f"{split}_labels"]
        if images.dim() != 3:
            raise DataError(f"{image_path}: images must have 3 dims (N, H, W), found {tuple(images.shape)}")
        if labels.dim() != 1:
            raise DataError(f"{label_path}: labels must have 1 dim (N,), found {tuple(labels.shape)}")
        if len(images) != len(labels):
            raise DataError(f"{image_path} holds {len(images)} images but {label_path} holds {len(labels)} labels; "
                            "they must be equal")
    if t["train_images"].shape[1:] != t["test_images"].shape[1:]:
        raise DataError(f"image sizes differ: {paths['train_images']} is {tuple(t['train_images'].shape[1:])}, "
                        f"{paths['test_images']} is {tuple(t['test_images'].shape[1:])}; they must be equal")
    # labels are stored as uint8, so they are >= 0 by construction; int64 is what cross_entropy wants
    return Arrays(t["train_images"], t["train_labels"].long(), t["test_images"], t["test_labels"].long())


# ---------------------------------------------------------------- sequence views


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


def _stats(images: torch.Tensor) -> tuple[float, float]:
    """Mean and (population) std of images / 255, exact in float64 from a 256-bin histogram."""
    counts = torch.bincount(images.flatten(), minlength=256).double()  # (256,)
    values = torch.arange(256, dtype=torch.float64) / 255
    total = counts.sum()
    mean = (counts * values).sum() / total
    std = ((counts * (values - mean) ** 2).sum() / total).sqrt()
    # constant images (std 0) would divide by zero; leave their scale alone instead
    return float(mean), (float(std) if std > 0 else 1.0)


def split_indices(cfg: DataConfig, seed: int, n_train: int) -> dict[str, torch.Tensor]:
    """{"train", "val"}: (n,) int64 indices into the training file's images."""
    # the validation split is a seeded shuffle of the training file, so it is the same on every run
    order = torch.randperm(n_train, generator=torch.Generator().manual_seed(seed))
    if cfg.max_train:
        order = order[:cfg.max_train]
    if cfg.val_size >= len(order):
        raise DataError(f"data.val_size ({cfg.val_size}) must be smaller than the training split, which has "
                        f"{len(order)} examples (data.max_train = {cfg.max_train}); lower data.val_size "
                        "or raise data.max_train")
    return {"val": order[:cfg.val_size], "train": order[cfg.val_size:]}


def split_images(cfg: DataConfig, seed: int, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The val or test split's images (N, H, W) uint8 and labels (N,) int64, as load_data picks them."""
    arrays = load_arrays(cfg)
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
    arrays = load_arrays(cfg)
    _, h, w = arrays.train_images.shape

    indices = split_indices(cfg, seed, len(arrays.train_images))
    # gathered once: normalization stats always come from the train portion, requested or not
    picked = {name: arrays.train_images[i] for name, i in indices.items()
              if name in splits or (name == "train" and cfg.normalize and stats is None)}  # (n, H, W) uint8

    if not cfg.normalize:
        mean, std = 0.0, 1.0
    elif stats is not None:
        mean, std = float(stats[0]), float(stats[1])
    else:
        mean, std = _stats(picked["train"])

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

    built: dict[str, Split | None] = dict.fromkeys(SPLITS)
    for name in ("train", "val"):
        if name in splits:
            built[name] = build(picked[name], arrays.train_labels[indices[name]])
    if "test" in splits:
        n_test = len(arrays.test_images) if cfg.max_test is None else cfg.max_test
        built["test"] = build(arrays.test_images[:n_test], arrays.test_labels[:n_test])

    seq_len, input_size = view_shape(cfg.sequence, h, w)
    # over the whole files, so max_train/max_test never change the model's output size
    num_classes = int(torch.cat([arrays.train_labels, arrays.test_labels]).max()) + 1  # train is never empty here
    sizes = {"train": len(indices["train"]), "val": len(indices["val"]),
             "test": len(arrays.test_images) if cfg.max_test is None else min(cfg.max_test, len(arrays.test_images))}
    return Data(built["train"], built["val"], built["test"], input_size, seq_len, num_classes, mean, std, perm,
                h, w, class_names(cfg.name, num_classes), {**sizes, "digest": digest(arrays)})


def digest(arrays: Arrays) -> str:
    """A cheap hash (BLAKE2b, 128 bits) of the four arrays' shapes and bytes: the same files give the same one."""
    hashed = hashlib.blake2b(digest_size=16)
    for tensor in (arrays.train_images, arrays.train_labels, arrays.test_images, arrays.test_labels):
        hashed.update(str(tuple(tensor.shape)).encode())
        hashed.update(tensor.contiguous().numpy())  # the buffer itself, no copy
    return hashed.hexdigest()
