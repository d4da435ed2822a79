"""IDX files with damaged headers, images without pixels, labels outside the dataset's classes and
empty splits: each is a message naming the file, in train and in eval (issue 15, items 9 and 10)."""

from __future__ import annotations

import gzip
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from helpers import FILES, make_dataset, set_args, time_limit, write_idx
from typer.testing import CliRunner

from seqclf.cli.app import app
from seqclf.config import DataConfig
from seqclf.data.datasets import load_data
from seqclf.data.idx import DataError, read_idx

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def header(dims: tuple[int, ...], data: bytes = b"") -> bytes:
    return bytes([0, 0, 8, len(dims)]) + struct.pack(f">{len(dims)}i", *dims) + data


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dims, fragment", [
    ((-8000, -28, 28), "negative sizes (-8000, -28, 28)"),
    ((2**30, 2**30, 16), "(1073741824, 1073741824, 16)"),
    ((2**31 - 1, 2**31 - 1, 2**31 - 1), "(2147483647, 2147483647, 2147483647)"),
])
def test_a_header_is_checked_before_its_data_is_read(tmp_path: Path, suffix: str, dims: tuple, fragment: str) -> None:
    path = tmp_path / ("train-images-idx3-ubyte" + suffix)
    content = header(dims, bytes(64))
    path.write_bytes(gzip.compress(content) if suffix else content)
    with time_limit(20), pytest.raises(DataError) as info:
        read_idx(path)
    message = str(info.value)
    assert str(path) in message and fragment in message
    assert "negative" in message or ("truncated" in message if not suffix else "memory available" in message)


def run_train(root: Path, tmp_path: Path, *extra: str):
    return runner.invoke(app, ["train", "--config", str(ROOT / "configs/lstm.yaml"), *set_args(
        ["data.name=idx", f"data.root={root}", "data.val_size=10", "model.hidden_size=4", "train.epochs=1",
         "train.device=cpu", f"output.dir={tmp_path / 'runs'}", *extra])])


def copy_data(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


@pytest.mark.parametrize("damage, fragment", [
    ("negative", "negative sizes (-8000, -28, 28)"),
    ("huge", "the header promises (1073741824, 1073741824, 16)"),
    ("no-columns", "its images are 28x0 pixels; an image needs at least one row and one column"),
    ("no-rows", "its images are 0x28 pixels"),
    ("empty", "holds no images, so the"),
])
@pytest.mark.parametrize("command", ["train", "eval"])
def test_damaged_images_are_named_in_train_and_eval(trained: tuple[Path, Path], tmp_path: Path, damage: str,
                                                     fragment: str, command: str) -> None:
    root = copy_data(trained[1], tmp_path / "data")
    split = "train" if command == "train" else "test"
    target = root / FILES[f"{split}_images"]
    n = len(read_idx(target))
    target.write_bytes({"negative": header((-8000, -28, 28)), "huge": header((2**30, 2**30, 16)),
                        "no-columns": header((n, 28, 0)), "no-rows": header((n, 0, 28)),
                        "empty": header((0, 28, 28))}[damage])
    if damage == "empty":
        write_idx(root / FILES[f"{split}_labels"], np.zeros(0, dtype=np.uint8))
    if command == "train":
        result = run_train(root, tmp_path)
    else:
        result = runner.invoke(app, ["eval", str(trained[0]), "--set", f"data.root={root}"])
    assert result.exit_code == 2, result.output
    assert fragment in result.stderr and str(target) in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_labels_outside_0_9_are_refused_for_the_named_datasets(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "data", n_train=60, n_test=20)
    labels = np.arange(20) % 10
    labels[3] = 200
    write_idx(root / FILES["test_labels"], labels.astype(np.uint8))
    cfg = DataConfig(name="mnist", root=str(root), download=False, val_size=10)
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte: 1 labels lie outside 0-9 \(up to 200\), but mnist "
                                        r"has 10 classes; use data.name=idx"):
        load_data(cfg, seed=0)


def test_labels_that_leave_classes_empty_are_a_warning_for_idx(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "data", n_train=60, n_test=20)
    labels = np.arange(20) % 10
    labels[3] = 200
    write_idx(root / FILES["test_labels"], labels.astype(np.uint8))
    data = load_data(DataConfig(name="idx", root=str(root), val_size=10), seed=0)
    assert data.num_classes == 201
    assert data.warnings == ["the labels range over 0-200, so the model gets 201 classes, but only 11 of them "
                             "occur in the 80 labels; check the labels files if that is not intended"]
    assert load_data(DataConfig(name="idx", root=str(make_dataset(tmp_path / "ok", n_train=60, n_test=20)),
                                val_size=10), seed=0).warnings == []


def test_data_that_cannot_fit_in_memory_is_refused_before_it_is_built(tmp_path: Path, monkeypatch) -> None:
    root = make_dataset(tmp_path / "data", n_train=60, n_test=20)
    monkeypatch.setattr("seqclf.config.limits.available_memory", lambda: 100_000)  # a machine with 100 KB free
    with pytest.raises(DataError, match=r"the train/val/test data as float32 would need about 251 KB, more than the "
                                        r"100 KB of memory available; lower data.max_train or data.max_test"):
        load_data(DataConfig(name="idx", root=str(root), val_size=10), seed=0)
    assert len(load_data(DataConfig(name="idx", root=str(root), val_size=10, max_test=5), seed=0,
                         splits=("test",), stats=(0.1, 0.3)).test) == 5  # 15 KB fits
