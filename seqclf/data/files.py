"""The four IDX files of a dataset: finding them (flat or torchvision's layout), downloading with
torchvision, reading them into uint8 tensors, checking their labels and fingerprinting them."""

from __future__ import annotations

import contextlib
import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from seqclf.config import DataConfig
from seqclf.data import folders
from seqclf.data.idx import DataError, read_idx

NAMED_CLASSES = 10  # mnist, fashion_mnist and kmnist: labels 0-9


TORCHVISION_NAMES = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "kmnist": "KMNIST"}


FILES = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
         "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}


# the fix when the data must fit a checkpoint (eval, --resume): only where the data is may change
REFIT = "point data.root at the data the run was trained on (--set data.root=DIR)"


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
    class_names: list[str] | None = None  # data.name=folder: its class folders' names (label i: the i-th)


def _missing(cfg: DataConfig, keys: tuple[str, ...], for_checkpoint: bool, failure: str | None = None) -> DataError:
    """Where it looked, in one line, and what to do; `for_checkpoint`: the dataset is a checkpoint's (eval,
    --resume), so only data.root and data.download may change and the fix says only that."""
    absent = [FILES[key] for key in keys if not any(p.is_file() for p in _candidates(cfg, FILES[key]))]
    where = " or ".join(str(folder) for folder in _folders(cfg))
    online = ("" if cfg.name == "idx" else ", or run with network access (data.download is true)" if cfg.download
              else ", or go online with --set data.download=true")
    example = ("" if for_checkpoint else ", e.g. `--set data.name=fashion_mnist --set data.root=/usr/share/datasets/"
               "fashion-mnist` after `apt-get install dataset-fashion-mnist`")
    reason = (f", and downloading them failed:\n{failure}\n" if failure else
              " (data.download is false).\n" if cfg.name != "idx" and not cfg.download else ".\n")
    return DataError(f"dataset {cfg.name!r}: {', '.join(absent)} (plain or .gz) not found in {where}{reason}"
                     f"{'' if for_checkpoint else _another_dataset(cfg)}Fix: point data.root at the folder that "
                     f"holds them (--set data.root=DIR){example}{online}.")


def _another_dataset(cfg: DataConfig) -> str:
    """A line for when data.root holds another named dataset's files in torchvision's layout: did you mean it?"""
    root = Path(cfg.root).expanduser()
    for name, folder in TORCHVISION_NAMES.items():
        raw = root / folder / "raw"
        if name != cfg.name and all((raw / f).is_file() or (raw / (f + ".gz")).is_file() for f in FILES.values()):
            return f"{raw} holds {name}'s files; did you mean data.name={name}?\n"
    return ""


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
        raise _missing(cfg, keys, for_checkpoint, _cause(exc)) from None


def _cause(exc: BaseException) -> str:
    """A download's error whole, indented, one line per mirror: torchvision writes "Tried URL, got:" and
    the error on the next line."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
    joined: list[str] = []
    for line in lines:
        if joined and joined[-1].endswith(":") and joined[-1].startswith("Tried "):
            joined[-1] += " " + line
        else:
            joined.append(line)
    return "\n".join(f"  {line}" for line in joined)


def load_arrays(cfg: DataConfig, parts: tuple[str, ...] = ("train", "test"), for_checkpoint: bool = False) -> Arrays:
    """The arrays of `parts` (train: the training file's pair; test: t10k's), downloading first if
    allowed, checked for consistency. `for_checkpoint`: the data must fit a checkpoint (see _missing).
    data.name=folder reads image files instead (seqclf.data.folders)."""
    if cfg.name == folders.FOLDER:
        root = Path(cfg.root).expanduser()
        names, read = folders.read_folders(root, parts)  # the classes from ROOT/train, even for the test split alone
        return Arrays(*(read["train"] or (None, None)), *(read["test"] or (None, None)), names)
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
    if cfg.name in TORCHVISION_NAMES and int(labels.max()) >= NAMED_CLASSES:
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


def digest(arrays: Arrays) -> str:
    """A cheap hash (BLAKE2b, 128 bits) of the four arrays' shapes and bytes: the same files give the same one."""
    hashed = hashlib.blake2b(digest_size=16)
    for tensor in (arrays.train_images, arrays.train_labels, arrays.test_images, arrays.test_labels):
        assert tensor is not None  # all four loaded (see load_data)
        hashed.update(str(tuple(tensor.shape)).encode())
        hashed.update(tensor.contiguous().numpy())  # the buffer itself, no copy
    return hashed.hexdigest()
