"""MNIST-format data: read IDX files (plain or .gz, flat or torchvision's layout), download
with torchvision when allowed, split train/val by seed, and turn images into sequences.

Everything stays a uint8 tensor until the very end: slicing, the seeded split and the
sequence views are index operations on bytes, then each split is moved to the device once
and scaled to float32 there. No per-image PIL or transform work.
"""

from __future__ import annotations

import contextlib
import hashlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from seqclf.config import DataConfig
from seqclf.config.limits import check_memory
from seqclf.data.idx import DataError, read_idx

TORCHVISION_NAMES = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "kmnist": "KMNIST"}
FILES = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
         "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}
SEQUENCES = ("rows", "columns", "pixels", "permuted_pixels")
SPLITS = ("train", "val", "test")
NAMED_CLASSES = 10  # mnist, fashion_mnist and kmnist: labels 0-9
# the fix when the data must fit a checkpoint (eval, --resume): only where the data is may change
REFIT = "point data.root at the data the run was trained on (--set data.root=DIR)"

# ---------------------------------------------------------------- files


def _candidates(cfg: DataConfig, filename: str) -> list[Path]:
    """Where a file may lie, in the order tried: torchvision's layout first, then flat."""
    return [folder / (filename + ext) for folder in _folders(cfg) for ext in ("", ".gz")]  # plain reads faster


def _folders(cfg: DataConfig) -> list[Path]:
    root = Path(cfg.root).expanduser()
    return [root] if cfg.name == "idx" else [root / TORCHVISION_NAMES[cfg.name] / "raw", root]


def locate(cfg: DataConfig, keys: tuple[str, ...] = tuple(FILES)) -> dict[str, Path] | None:
    """The path of each of the FILES named by `keys`, or None when any is missing."""
    found = {}
    for key in keys:
        path = next((p for p in _candidates(cfg, FILES[key]) if p.is_file()), None)
        if path is None:
            return None
        found[key] = path
    return found


@dataclass
class Arrays:
    train_images: torch.Tensor | None  # (N, H, W) uint8; the train pair is None when only test is loaded
    train_labels: torch.Tensor | None  # (N,) int64
    test_images: torch.Tensor | None  # (M, H, W) uint8; the test pair is None when only train is loaded
    test_labels: torch.Tensor | None  # (M,) int64


def _missing(cfg: DataConfig, keys: tuple[str, ...], for_checkpoint: bool, failure: str | None = None) -> DataError:
    """Where it looked, in one line, and what to do; `for_checkpoint`: the dataset is a checkpoint's (eval,
    --resume), so only data.root and data.download may change and the fix says only that."""
    absent = [FILES[key] for key in keys if not any(p.is_file() for p in _candidates(cfg, FILES[key]))]
    where = " or ".join(str(folder) for folder in _folders(cfg))
    online = ("" if cfg.name == "idx" else ", or run with network access (data.download is true)" if cfg.download
              else ", or go online with --set data.download=true")
    example = ("" if for_checkpoint else ", e.g. `--set data.name=fashion_mnist --set data.root=/usr/share/datasets/"
               "fashion-mnist` after `apt-get install dataset-fashion-mnist`")
    reason = (f", and downloading them failed: {failure}" if failure else
              " (data.download is false)" if cfg.name != "idx" and not cfg.download else "")
    return DataError(f"dataset {cfg.name!r}: {', '.join(absent)} (plain or .gz) not found in {where}{reason}.\n"
                     f"Fix: point data.root at the folder that holds them (--set data.root=DIR){example}{online}.")


def _download(cfg: DataConfig, keys: tuple[str, ...], for_checkpoint: bool) -> None:
    """torchvision writes ROOT/<Name>/raw/*; every failure (offline, bad mirror) is a DataError."""
    try:
        import torchvision.datasets

        dataset = getattr(torchvision.datasets, TORCHVISION_NAMES[cfg.name])
        # torchvision prints progress to stdout, which belongs to --json output: send it to stderr
        with contextlib.redirect_stdout(sys.stderr):
            for train in (True, False):
                dataset(str(Path(cfg.root).expanduser()), train=train, download=True)
    except (ImportError, OSError, RuntimeError, ValueError) as exc:  # URLError is an OSError
        detail = " ".join(str(exc).split())[:160] or type(exc).__name__  # torchvision's errors span lines
        raise _missing(cfg, keys, for_checkpoint, detail) from None


def load_arrays(cfg: DataConfig, parts: tuple[str, ...] = ("train", "test"), for_checkpoint: bool = False) -> Arrays:
    """The arrays of `parts` (train: the training file's pair; test: t10k's), downloading first if
    allowed, checked for consistency. `for_checkpoint`: the data must fit a checkpoint (see _missing)."""
    keys = tuple(key for key in FILES if key.split("_")[0] in parts)
    paths = locate(cfg, keys)
    if paths is None and cfg.download and cfg.name != "idx":
        _download(cfg, keys, for_checkpoint)
        paths = locate(cfg, keys)
    if paths is None:
        raise _missing(cfg, keys, for_checkpoint)
    t: dict[str, Any] = {key: read_idx(path) for key, path in paths.items()}
    for split in parts:
        images, labels = t[f"{split}_images"], t[f"{split}_labels"]
        image_path, label_path = paths[f"{split}_images"], paths[f"{split}_labels"]
        if images.dim() != 3:
            raise DataError(f"{image_path}: images must have 3 dims (N, H, W), found {tuple(images.shape)}")
        if labels.dim() != 1:
            raise DataError(f"{label_path}: labels must have 1 dim (N,), found {tuple(labels.shape)}")
        if len(images) != len(labels):
            raise DataError(f"{image_path} holds {len(images)} images but {label_path} holds {len(labels)} labels; "
                            "they must be equal")
        if len(images) == 0:
            raise DataError(f"{image_path}: holds no images, so the {split} split would be empty")
        if 0 in images.shape:
            raise DataError(f"{image_path}: its images are {images.shape[1]}x{images.shape[2]} pixels; "
                            f"an image needs at least one row and one column")
        t[f"{split}_labels"] = labels.long()  # uint8 on disk, so >= 0; int64 is what cross_entropy wants
    if len(parts) == 2 and t["train_images"].shape[1:] != t["test_images"].shape[1:]:
        raise DataError(f"image sizes differ: {paths['train_images']} is {tuple(t['train_images'].shape[1:])}, "
                        f"{paths['test_images']} is {tuple(t['test_images'].shape[1:])}; they must be equal")
    for split in parts:
        _check_labels(cfg, t[f"{split}_labels"], paths[f"{split}_labels"], for_checkpoint)
    return Arrays(*(t.get(key) for key in FILES))


def _check_labels(cfg: DataConfig, labels: torch.Tensor, path: Path, for_checkpoint: bool) -> None:
    """The named datasets have the ten classes 0-9; an `idx` folder's classes are its labels."""
    if cfg.name != "idx" and int(labels.max()) >= NAMED_CLASSES:
        outside = int((labels >= NAMED_CLASSES).sum())
        fix = REFIT if for_checkpoint else "use data.name=idx for other labels"
        raise DataError(f"{path}: {outside:,} labels lie outside 0-{NAMED_CLASSES - 1} (up to {int(labels.max())}), "
                        f"but {cfg.name} has {NAMED_CLASSES} classes; {fix}")


def label_warnings(labels: torch.Tensor) -> list[str]:
    """For an `idx` folder: a warning when the labels leave classes empty (one stray label of 200
    gives the model a 201-class head)."""
    classes, present = int(labels.max()) + 1, len(torch.unique(labels))
    if present == classes:
        return []
    return [f"the labels range over 0-{classes - 1}, so the model gets {classes} classes, but only {present} of "
            f"them occur in the {len(labels):,} labels; check the labels files if that is not intended"]


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
    warnings: list[str] = field(default_factory=list)  # for the caller to show, e.g. label_warnings


def _stats(images: torch.Tensor) -> tuple[float, float]:
    """Mean and (population) std of images / 255, exact in float64 from a 256-bin histogram."""
    counts = torch.bincount(images.flatten(), minlength=256).double()  # (256,)
    values = torch.arange(256, dtype=torch.float64) / 255
    total = counts.sum()
    mean = (counts * values).sum() / total
    std = ((counts * (values - mean) ** 2).sum() / total).sqrt()
    # constant images (std 0) would divide by zero; leave their scale alone instead
    return float(mean), (float(std) if std > 0 else 1.0)


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

    n_test = 0 if arrays.test_images is None else min(len(arrays.test_images), cfg.max_test or len(arrays.test_images))
    if torch.device(device).type == "cpu":  # float32 sequences: 4 bytes a pixel (an accelerator has its own memory)
        examples = sum(n_test if name == "test" else len(indices[name]) for name in splits)
        fix = "lower data.max_test" if splits == ("test",) else "lower data.max_train or data.max_test"
        check_memory(f"the {'/'.join(splits)} data as float32", 4 * examples * h * w, fix, DataError)
    built: dict[str, Split | None] = dict.fromkeys(SPLITS)
    for name in ("train", "val"):
        if name in splits:
            built[name] = build(picked[name], arrays.train_labels[indices[name]])
    if "test" in splits:
        built["test"] = build(arrays.test_images[:n_test], arrays.test_labels[:n_test])

    seq_len, input_size = view_shape(cfg.sequence, h, w)
    # over the whole files, so max_train/max_test never change the model's output size
    labels = torch.cat([y for y in (arrays.train_labels, arrays.test_labels) if y is not None])  # never empty
    num_classes = int(labels.max()) + 1
    fingerprint = None  # of the whole dataset: only when both files were read (training, --resume)
    if arrays.train_images is not None and arrays.test_images is not None:
        sizes = {"train": len(indices["train"]), "val": len(indices["val"]), "test": n_test}
        fingerprint = {**sizes, "digest": digest(arrays)}
    warnings = label_warnings(labels) if cfg.name == "idx" else []
    return Data(built["train"], built["val"], built["test"], input_size, seq_len, num_classes, mean, std, perm,
                h, w, class_names(cfg.name, num_classes), fingerprint, warnings)


def digest(arrays: Arrays) -> str:
    """A cheap hash (BLAKE2b, 128 bits) of the four arrays' shapes and bytes: the same files give the same one."""
    hashed = hashlib.blake2b(digest_size=16)
    for tensor in (arrays.train_images, arrays.train_labels, arrays.test_images, arrays.test_labels):
        assert tensor is not None  # all four loaded (see load_data)
        hashed.update(str(tuple(tensor.shape)).encode())
        hashed.update(tensor.contiguous().numpy())  # the buffer itself, no copy
    return hashed.hexdigest()
