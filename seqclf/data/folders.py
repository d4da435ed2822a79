"""data.name=folder: a dataset of image files sorted into one folder per class, read without converting.

    DIR/train/<class>/*.png    the training images (the validation split is drawn from them, seeded)
    DIR/test/<class>/*.png     the test images; a class may have none here, but no class of its own

The classes are the folder names under DIR/train, sorted: label 0 is the first name. Each image is
read and prepared exactly as `seqclf predict` prepares an image file (seqclf.data.images.read_image:
greyscale, MNIST-style crop and centring to SIZE), so images of any size, colour mode or polarity
mix, and a model trained here predicts on new files of the same kind as it trained. Every problem
(an empty class folder, a file that is not an image, a blank image) is reported at once.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from seqclf.data.idx import DataError
from seqclf.data.images import ImageError, read_image
from seqclf.data.inputfiles import image_files

FOLDER = "folder"  # the data.name that reads image folders
SIZE = (28, 28)  # (H, W): what predict prepares an image file to, MNIST's size
LAYOUT = "data.name=folder reads DIR/train/<class>/* and DIR/test/<class>/* (one folder per class)"
SHOWN = 10  # problems listed in full; the rest are counted


def _subfolders(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def class_names(root: Path) -> list[str]:
    """The sorted class folder names under ROOT/train; DataError when the layout is not there."""
    if not root.is_dir():
        raise DataError(f"data.root {root}: no such folder; {LAYOUT}")
    train = root / "train"
    if not train.is_dir():
        found = _subfolders(root)
        held = f"it holds {', '.join(found)}: move those class folders to {train}/ and put" if found else "put"
        raise DataError(f"data.root {root}: no train folder; {LAYOUT}: {held} some images of each class in "
                        f"{root / 'test'}/<class>/ for the test split")
    names = _subfolders(train)
    if len(names) < 2:
        what = f"one class folder ({names[0]})" if names else "no class folder"
        raise DataError(f"{train}: {what}; a classifier needs at least two, one folder of images per class "
                        f"({LAYOUT})")
    return names


Pair = tuple[torch.Tensor, torch.Tensor]  # images (N, H, W) uint8, labels (N,) int64


def read_folders(root: Path, splits: tuple[str, ...]) -> tuple[list[str], dict[str, Pair | None]]:
    """(the class names, {"train", "test"}: the images and labels of each split asked for, else None); every
    problem of every split asked for in one DataError."""
    names = class_names(root)
    problems: list[str] = []
    read = {split: _read_split(root, split, names, problems) if split in splits else None
            for split in ("train", "test")}
    if problems:
        more = f"\n  ... and {len(problems) - SHOWN} more" if len(problems) > SHOWN else ""
        raise DataError(f"data.root {root}: {len(problems)} problem{'s' * (len(problems) > 1)} with the images "
                        f"({LAYOUT}):\n  " + "\n  ".join(problems[:SHOWN]) + more)
    return names, read


def _read_split(root: Path, split: str, names: list[str], problems: list[str]) -> Pair | None:
    """ROOT/<split>/<class>/* -> (images, labels) in class then file order; what is wrong goes to `problems`."""
    folder = root / split
    if not folder.is_dir():
        problems.append(f"{folder}: no such folder")
        return None
    problems += [f"{folder / name}: not a class of {root / 'train'} ({', '.join(names)}); the test images' "
                f"classes must be the training images' (rename or remove it)" for name in _subfolders(folder)
                if name not in names]
    problems += [f"{path}: outside the class folders; move it into {folder}/<class>/"
                 for path in sorted(folder.iterdir()) if path.is_file() and not path.name.startswith(".")]
    images, labels = [], []
    for label, name in enumerate(names):
        if not (folder / name).is_dir():
            continue  # a class without test images: allowed, it is scored on the others
        errors: list[tuple[str, str]] = []
        others: list[Path] = []
        files = image_files(folder / name, errors, others)
        problems += [f"{where}: {why}" for where, why in errors]
        problems += [f"{path}: not an image file (its name ends in {path.suffix or 'nothing'}); a class folder "
                     f"holds only images" for path in others]
        if not files and not others:
            problems.append(f"{folder / name}: an empty class folder; put the class's images in it or remove it")
        for path in files:
            try:
                images.append(read_image(path, *SIZE))
                labels.append(label)
            except ImageError as exc:  # predict's own words, less its advice for predict's inputs
                problems.append(f"{path}: {str(exc).split('; ')[0]}; remove or replace the file")
    if not images:
        problems.append(f"{folder}: holds no images, so the {split} split would be empty")
        return None
    return torch.from_numpy(np.stack(images)), torch.tensor(labels, dtype=torch.int64)
