"""The true class of each prediction input, for `seqclf predict --labels`: a CSV of file,label, or the
folders the images lie in (`--labels folders`).

A CSV row names a file relative to the CSV's own folder (or to the current folder, or absolutely),
or one image of an IDX or .npy file as FILE#i; a header row `file,label` is optional. A label is a
class name of the model ("Sandal", "7") or its number. Every input needs a label, and every label
must be a class of the model: anything else is one LabelsError naming the rows and files at fault.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

from seqclf.errors import SeqclfError

FOLDERS = "folders"  # --labels folders: each image's class is the name of a folder it lies in
SHOWN = 5  # the files or rows a message names before "and N more"


class LabelsError(SeqclfError):
    pass


def class_index(label: str, class_names: list[str]) -> int | None:
    """A label as its class number: the exact name, a name up to case, or the number itself; None if none."""
    if label in class_names:
        return class_names.index(label)
    folded = [k for k, name in enumerate(class_names) if name.casefold() == label.casefold()]
    if len(folded) == 1:
        return folded[0]
    return int(label) if label.isdigit() and int(label) < len(class_names) else None


def read_truth(labels: str | Path, names: list[str], sources: list[Any], class_names: list[str]) -> list[int]:
    """The class number of each input named `names` (as seqclf.data.images.read_inputs names them, read
    from `sources`), from the CSV file `labels` or, for FOLDERS, from the folders."""
    if str(labels) == FOLDERS:
        return _from_folders(names, sources, class_names)
    return _from_csv(Path(labels), names, class_names)


def listed(items: list[str]) -> str:
    """The first SHOWN items, comma-separated, and how many more."""
    return ", ".join(items[:SHOWN]) + (f" and {len(items) - SHOWN} more" if len(items) > SHOWN else "")


def _classes(class_names: list[str]) -> str:
    return f"the model's classes are {', '.join(class_names)} (or their numbers 0-{len(class_names) - 1})"


def _key(name: str, base: Path) -> tuple[Path, int | None]:
    """A file name (or FILE#i) as (its resolved path, i or None), relative names under `base`."""
    path, index = Path(name), None
    found = re.fullmatch(r"(.*)#(\d+)", name)
    if found and not (base / path).exists() and (base / found.group(1)).exists():
        path, index = Path(found.group(1)), int(found.group(2))
    return (base / path).resolve(), index


def _rows(path: Path) -> list[tuple[int, str, str]]:
    """(line, file, label) of each row of the CSV, its header skipped."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = [(number, row) for number, row in enumerate(csv.reader(handle), 1) if any(c.strip() for c in row)]
    except FileNotFoundError:
        raise LabelsError(f"--labels {path}: no such file; give a CSV of file,label rows, or `--labels "
                          f"{FOLDERS}` when the images lie in folders named by class") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise LabelsError(f"--labels {path}: not a readable CSV file ({exc}); give UTF-8 text of file,label "
                          f"rows") from None
    if rows and [c.strip().lower() for c in rows[0][1]] in (["file", "label"], ["input", "label"]):
        rows = rows[1:]
    bad = [f"line {number}" for number, row in rows if len(row) != 2 or not row[0].strip()]
    if bad or not rows:
        raise LabelsError(f"--labels {path}: " + (f"{listed(bad)}: each row should be two fields, file,label"
                                                  if bad else "holds no rows") + "; e.g. `shoe.png,Sneaker`")
    return [(number, row[0].strip(), row[1].strip()) for number, row in rows]


def _from_csv(path: Path, names: list[str], class_names: list[str]) -> list[int]:
    rows = _rows(path)
    unknown = [f"line {number}: {label!r}" for number, _, label in rows if class_index(label, class_names) is None]
    if unknown:
        raise LabelsError(f"--labels {path}: labels that are not classes of the model ({listed(unknown)}); "
                          f"{_classes(class_names)}")
    truth: dict[tuple[Path, int | None], int] = {}
    for _, file, label in rows:  # where the CSV's folder and the current one differ, the CSV's folder wins
        for base in (Path.cwd(), path.parent):
            truth[_key(file, base)] = class_index(label, class_names)  # type: ignore[assignment]
    missing = [name for name in names if _key(name, Path.cwd()) not in truth]
    if missing:
        raise LabelsError(f"--labels {path}: {len(missing)} of the {len(names)} inputs have no row in it "
                          f"({listed(missing)}); each row names a file relative to the CSV's folder, or "
                          f"FILE#i for an image of an IDX or .npy file")
    return [truth[_key(name, Path.cwd())] for name in names]


def _from_folders(names: list[str], sources: list[Any], class_names: list[str]) -> list[int]:
    """The class of an image is the name of the nearest folder it lies in, up to the folder given, that is
    a class of the model: FOLDER/Sandal/1.png, or Sandal/1.png given as the folder Sandal."""
    given = [Path(source).resolve() for source in sources
             if isinstance(source, (str, Path)) and Path(source).is_dir()]
    truth, unknown = [], []
    for name in names:
        path = Path(re.sub(r"#\d+$", "", name)).resolve()  # an IDX file's images: the file's folder
        top = next((folder for folder in given if path.is_relative_to(folder)), path.parent)
        classes = [class_index(folder, class_names) for folder in (top.name, *path.parent.relative_to(top).parts)]
        found = [k for k in classes if k is not None]
        if found:
            truth.append(found[-1])
        else:
            unknown.append(f"{name} (in {path.parent.name or path.parent})")
    if unknown:
        raise LabelsError(f"--labels {FOLDERS}: {len(unknown)} of the {len(names)} inputs lie in no folder named "
                          f"by a class ({listed(unknown)}); {_classes(class_names)}; or give a CSV of file,label rows")
    return truth
