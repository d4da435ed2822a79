"""data.name=folder: training on DIR/train/<class>/* and DIR/test/<class>/* image files the tests draw."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import set_args
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from seqclf.cli.app import app
from seqclf.config import load_config
from seqclf.data.files import load_arrays
from seqclf.data.images import read_image

CLASSES = ("bar", "cross", "ring")  # written unsorted below: the labels follow the sorted names


def shape(kind: str, size: tuple[int, int], shift: int, dark_on_light: bool) -> Image.Image:
    """A bar, a cross or a ring drawn on a canvas of `size` (sizes differ: each is prepared to 28x28)."""
    paper, ink = (255, 0) if dark_on_light else (0, 255)
    image = Image.new("L", size, paper)
    draw = ImageDraw.Draw(image)
    w, h = size
    x, y = w // 2 + shift, h // 2
    if kind == "bar":
        draw.line([(x - 10, y), (x + 10, y)], fill=ink, width=4)
    elif kind == "cross":
        draw.line([(x - 10, y - 10), (x + 10, y + 10)], fill=ink, width=4)
        draw.line([(x - 10, y + 10), (x + 10, y - 10)], fill=ink, width=4)
    else:
        draw.ellipse([(x - 10, y - 10), (x + 10, y + 10)], outline=ink, width=4)
    return image


def image_folders(root: Path, train: int = 6, test: int = 2, classes: tuple[str, ...] = CLASSES) -> Path:
    """ROOT/train/<class>/i.png and ROOT/test/<class>/i.png: `train` and `test` images of each class."""
    for split, count in (("train", train), ("test", test)):
        for kind in reversed(classes):
            folder = root / split / kind
            folder.mkdir(parents=True)
            for i in range(count):
                size = (40 + 4 * i, 36 + 2 * (i % 3))  # mixed sizes
                shape(kind, size, i % 3 - 1, dark_on_light=i % 2 == 0).save(folder / f"{i}.png")
    return root


def folder_args(root: Path, out: Path) -> list[str]:
    return ["--config", "lstm", *set_args(["data.name=folder", f"data.root={root}", "data.val_size=3",
                                           "model.hidden_size=8", "train.epochs=2", "train.batch_size=5",
                                           "train.lr=0.02", "train.device=cpu", "train.num_threads=1",
                                           f"output.dir={out}"])]


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """(the image folders, `seqclf train --json` of a run on them)."""
    base = tmp_path_factory.mktemp("folders")
    root = image_folders(base / "shapes")
    result = CliRunner().invoke(app, ["train", *folder_args(root, base / "runs"), "--json"])
    assert result.exit_code == 0, result.output
    return root, json.loads(result.stdout)


def test_images_are_read_as_predict_reads_them_labelled_by_sorted_folder_names(folder_run: tuple[Path, dict]) -> None:
    root, _ = folder_run
    cfg = load_config(None, ["data.name=folder", f"data.root={root}"])
    arrays = load_arrays(cfg.data)
    assert arrays.class_names == sorted(CLASSES)
    assert arrays.train_images.shape == (18, 28, 28) and arrays.test_images.shape == (6, 28, 28)
    assert arrays.train_labels.tolist() == [0] * 6 + [1] * 6 + [2] * 6  # bar, cross, ring
    files = sorted((root / "train").glob("*/*.png"))
    expected = np.stack([read_image(path, 28, 28) for path in files])
    assert np.array_equal(arrays.train_images.numpy(), expected)  # one piece of code: predict's
    only_test = load_arrays(cfg.data, ("test",))  # eval reads the test split alone, with every class's label
    assert only_test.train_images is None and only_test.class_names == sorted(CLASSES)


def test_train_eval_and_predict_name_the_folders_classes(folder_run: tuple[Path, dict], tmp_path: Path) -> None:
    root, summary = folder_run
    checkpoint = summary["checkpoint"]
    scores = CliRunner().invoke(app, ["eval", checkpoint, "--json"])
    assert scores.exit_code == 0, scores.output
    result = json.loads(scores.stdout)
    assert result["class_names"] == sorted(CLASSES) and result["n"] == 6
    shown = CliRunner().invoke(app, ["eval", checkpoint])
    assert shown.exit_code == 0 and "ring" in shown.output and "cross" in shown.output
    picture = tmp_path / "new.png"
    shape("ring", (50, 50), 0, dark_on_light=True).save(picture)
    predicted = CliRunner().invoke(app, ["predict", checkpoint, str(picture), "--json"])
    assert predicted.exit_code == 0, predicted.output
    assert json.loads(predicted.stdout)["predictions"][0]["class"] in CLASSES


def tiny(damage):
    """Two training images and one test image of each class, then `damage` done to them."""
    return lambda root: damage(image_folders(root, train=2, test=1))


@pytest.mark.parametrize(("make", "expected"), [
    (tiny(lambda root: (root / "train/cross/notes.txt").write_text("hello")),
     ["train/cross/notes.txt", "not an image file"]),
    (tiny(lambda root: (root / "train/cross/broken.png").write_bytes(b"not a png")),
     ["train/cross/broken.png", "not an image Pillow can read"]),
    (tiny(lambda root: [p.unlink() for p in (root / "test/ring").iterdir()]),
     ["test/ring", "empty class folder"]),
    (tiny(lambda root: (root / "test/zebra").mkdir()),
     ["test/zebra", "not a class of", "bar, cross, ring"]),
    (tiny(lambda root: (root / "test").rename(root / "testing")),
     ["test", "no such folder", "DIR/train/<class>/", "DIR/test/<class>/"]),
    (tiny(lambda root: Image.new("L", (30, 30), 255).save(root / "train/bar/blank.png")),
     ["train/bar/blank.png", "blank image"]),
    (lambda root: image_folders(root, classes=("only",)), ["one class folder (only)", "at least two"]),
    (lambda root: [(root / kind).mkdir(parents=True) for kind in CLASSES],
     ["no train folder", "DIR/train/<class>/", "bar, cross, ring"]),  # DIR/<class>/: says how to lay them out
    (lambda root: None, ["no such folder"]),
])
def test_bad_folders_are_one_clear_message(tmp_path: Path, make, expected: list[str]) -> None:
    make(tmp_path / "shapes")
    result = CliRunner().invoke(app, ["train", *folder_args(tmp_path / "shapes", tmp_path / "runs")])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for fragment in expected:
        assert fragment in result.output, (fragment, result.output)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())  # no run was started


def test_every_problem_of_both_splits_at_once(tmp_path: Path) -> None:
    root = image_folders(tmp_path / "shapes", train=2, test=1)
    (root / "train/cross/notes.txt").write_text("hello")
    (root / "test/zebra").mkdir()
    result = CliRunner().invoke(app, ["train", *folder_args(root, tmp_path / "runs")])
    assert result.exit_code == 2 and "2 problems" in result.output
    assert "notes.txt" in result.output and "test/zebra" in result.output


def test_eval_on_folders_of_other_classes_is_refused(folder_run: tuple[Path, dict], tmp_path: Path) -> None:
    _, summary = folder_run
    other = image_folders(tmp_path / "fruit", train=1, test=1, classes=("apple", "pear", "plum"))
    result = CliRunner().invoke(app, ["eval", summary["checkpoint"], "--set", f"data.root={other}"])
    assert result.exit_code == 2, result.output  # the same number of classes, but labels that mean other things
    assert "apple, pear, plum" in result.output and "bar, cross, ring" in result.output
