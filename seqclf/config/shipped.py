"""The configs shipped inside the package (seqclf/configs/*.yaml): list, find by name, copy.

`--config lstm` means the shipped lstm.yaml when no file `lstm` exists, so the examples work from
any folder and in any install (the files are package data, present in the wheel).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from seqclf.errors import SeqclfError

FOLDER = Path(__file__).resolve().parents[1] / "configs"  # seqclf/configs
SPACES = ("space", "space_fast")  # search spaces for `seqclf tune --space` shipped beside the configs: not configs


def names() -> list[str]:
    """The shipped configs' names (file names without .yaml), sorted."""
    return sorted(path.stem for path in FOLDER.glob("*.yaml") if path.stem not in SPACES)


def path_of(name: str) -> Path:
    """The shipped config called `name` (`lstm` or `lstm.yaml`), or a SeqclfError listing them."""
    path = FOLDER / (name if name.endswith(".yaml") else f"{name}.yaml")
    if "/" in name or not path.is_file():
        raise SeqclfError(f"{name}: no such shipped config; choose one of {', '.join(names())} (seqclf config list)")
    return path


def describe(name: str) -> str:
    """What a shipped config trains: the first phrase of its comment (after the command line)."""
    lines = [line[1:].strip() for line in path_of(name).read_text().splitlines() if line.startswith("#")]
    text = " ".join(lines[1:])
    return min((text.split(mark, 1)[0] for mark in (": ", ". ")), key=len)


def resolve_config_path(path: str | Path) -> Path:
    """`path` when it exists (or names a file elsewhere), else the shipped config of that name."""
    path = Path(path)
    if path.exists() or len(path.parts) != 1 or path.suffix not in ("", ".yaml"):
        return path
    return path_of(path.name) if path.stem in names() else path


def copy(name: str, destination: str | Path) -> Path:
    """Copy a shipped config to `destination` (a file, or a folder to put NAME.yaml in); never overwrites."""
    source, target = path_of(name), Path(destination)
    if target.is_dir():
        target = target / source.name
    if target.exists():
        raise SeqclfError(f"{target}: already exists; seqclf config cp never overwrites a file, choose another name")
    try:
        shutil.copyfile(source, target)
    except OSError as exc:
        raise SeqclfError(f"{target}: cannot be written ({exc.strerror or exc}); choose a writable path") from None
    return target
