"""`seqclf eval`: only the split it scores is read, its hints work where they are printed, and a
damaged checkpoint (fields of the wrong type, weights that do not fit, NaN weights) is a message
(issue 14, item 4; issue 15, items 9-11)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import FILES, changed_checkpoint, make_dataset, random_checkpoint, write_idx
from typer.testing import CliRunner

from seqclf.cli.app import app
from seqclf.data.idx import read_idx

runner = CliRunner()


def evaluate(*args: str):
    result = runner.invoke(app, ["eval", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result


def test_eval_of_the_test_split_needs_only_the_t10k_files(trained: tuple[Path, Path], tmp_path: Path) -> None:
    only_test = tmp_path / "t10k-only"
    only_test.mkdir()
    for key in ("test_images", "test_labels"):
        shutil.copy(trained[1] / FILES[key], only_test / FILES[key])
    full = evaluate(str(trained[0]), "--json")
    alone = evaluate(str(trained[0]), "--set", f"data.root={only_test}", "--json")
    assert alone.exit_code == 0, alone.output
    assert json.loads(alone.stdout)["accuracy"] == json.loads(full.stdout)["accuracy"]
    assert json.loads(alone.stdout)["n"] == 200
    val = evaluate(str(trained[0]), "--set", f"data.root={only_test}", "--split", "val")
    assert val.exit_code == 2 and "train-images-idx3-ubyte, train-labels-idx1-ubyte (plain or .gz)" in val.stderr


def test_the_missing_data_hint_of_eval_is_a_command_eval_accepts(trained: tuple[Path, Path], tmp_path: Path) -> None:
    result = evaluate(str(trained[0]), "--set", f"data.root={tmp_path / 'nowhere'}")
    assert result.exit_code == 2
    assert f"not found in {tmp_path / 'nowhere'}." in result.stderr and "--set data.root=DIR" in result.stderr
    assert "data.name" not in result.stderr  # eval refuses --set data.name: never suggest it


def damaged(trained: tuple[Path, Path], tmp_path: Path, change) -> str:
    """A copy of the run's best.pt with `change(payload)` applied."""
    return changed_checkpoint(str(trained[0]), tmp_path / "damaged.pt", change)


@pytest.mark.parametrize("field, value, fragment", [
    ("num_classes", "10", "data.num_classes should be a positive integer, got str '10'"),
    ("num_classes", 10.0, "data.num_classes should be a positive integer, got float 10.0"),
    ("num_classes", -3, "data.num_classes should be a positive integer, got int -3"),
    ("mean", [0.1], "data.mean should be a finite number, got list [0.1]"),
    ("mean", float("nan"), "data.mean should be a finite number, got float nan"),
    ("mean", "x" * 10_000, "data.mean should be a finite number, got str 'xxxxxxxx"),
    ("std", 0.0, "data.std should be positive, got float 0.0"),
    ("input_size", True, "data.input_size should be a positive integer, got bool True"),
    ("permutation", torch.zeros(3), "data.permutation should be null or a tensor of 784 indices, got Tensor"),
    ("pixels", {"mean": 0.1}, "data.pixels should be null or a dict of mean, std, background, each from 0 to 1"),
    ("pixels", {"mean": 2.0, "std": 0.3, "background": 0.0}, "data.pixels should be null or a dict of mean"),
])
def test_checkpoint_data_fields_of_the_wrong_type_or_range_are_named(trained: tuple[Path, Path], tmp_path: Path,
                                                                      field: str, value: object, fragment: str) -> None:
    path = damaged(trained, tmp_path, lambda payload: payload["data"].__setitem__(field, value))
    result = evaluate(path)
    assert result.exit_code == 2, result.output
    assert f"{path}: damaged checkpoint: {fragment}" in result.stderr and len(result.stderr) < 400


def test_weights_that_do_not_fit_name_the_parameters_and_shapes(trained: tuple[Path, Path], tmp_path: Path) -> None:
    def change(payload: dict) -> None:
        model = payload["model"]
        model["head.weight"] = torch.zeros(10, 5)
        model["rnn.extra"] = model.pop("rnn.bias_hh_l0")

    result = evaluate(damaged(trained, tmp_path, change))
    assert result.exit_code == 2, result.output
    message = " ".join(result.stderr.split())
    assert "its weights do not fit the model the config describes" in message
    assert ("missing: rnn.bias_hh_l0; unexpected: rnn.extra; shape differs (saved vs model): head.weight (10, 5) "
            "vs (10, 16)") in message


def test_nan_weights_are_exit_1_with_a_message(trained: tuple[Path, Path], tmp_path: Path) -> None:
    path = damaged(trained, tmp_path, lambda payload: payload["model"]["head.bias"].fill_(float("nan")))
    result = evaluate(path, "--json")
    assert result.exit_code == 1, result.output
    assert "the test loss is nan: its weights hold NaN or infinite values" in result.stderr and not result.stdout


def test_every_data_hint_of_eval_names_only_what_eval_accepts(trained: tuple[Path, Path], tmp_path: Path) -> None:
    """Labels outside a named dataset's classes, or a training file smaller than val_size: eval may
    only change data.root, so that is what it says (never data.name or data.val_size)."""
    root = make_dataset(tmp_path / "few", n_train=15, n_test=20)  # fewer than the run's val_size of 100
    labels = np.arange(20) % 10
    labels[0] = 50
    write_idx(root / FILES["test_labels"], labels.astype(np.uint8))
    mnist = damaged(trained, tmp_path, lambda payload: payload["config"]["data"].__setitem__("name", "mnist"))
    for args in ([mnist, "--set", f"data.root={root}"], [str(trained[0]), "--set", f"data.root={root}",
                                                           "--split", "val"]):
        result = evaluate(*args)
        assert result.exit_code == 2, result.output
        assert "point data.root at the data the run was trained on (--set data.root=DIR)" in result.stderr
        assert "data.name" not in result.stderr and "lower data.val_size" not in result.stderr


def test_a_checkpoint_config_with_an_unresolved_hidden_size_ends_in_a_message(trained: tuple[Path, Path],
                                                                              tmp_path: Path) -> None:
    def change(payload: dict) -> None:
        payload["config"]["model"].update(hidden_size="auto", param_budget=10_000)

    result = evaluate(damaged(trained, tmp_path, change))  # `auto` resolves to a size its weights do not have
    assert result.exit_code == 2, result.output
    assert "its weights do not fit the model the config describes" in result.stderr


# ---------------------------------------------------------------- data unlike the training data (issue 23, item 2)


def inverted_copy(root: Path, target: Path) -> Path:
    """The test files of `root` with every image inverted (dark ink on white): unlike any data trained on."""
    target.mkdir()
    images = read_idx(root / FILES["test_images"]).numpy()
    write_idx(target / FILES["test_images"], 255 - images)
    shutil.copy(root / FILES["test_labels"], target / FILES["test_labels"])
    return target


def test_eval_on_data_unlike_the_training_data_warns_and_says_how(trained: tuple[Path, Path], tmp_path: Path) -> None:
    other = inverted_copy(trained[1], tmp_path / "inverted")
    result = evaluate(str(trained[0]), "--set", f"data.root={other}", "--json")
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    trained_stats, found = printed["pixel_stats"]["trained"], printed["pixel_stats"]["evaluated"]
    assert trained_stats["background"] < 0.5 < found["background"] and found["mean"] > 0.5 > trained_stats["mean"]
    [warning] = printed["data_warnings"]
    assert f"trained on idx in {trained[1]} (pixel mean {trained_stats['mean']:.2f}" in warning
    assert f"evaluating the test split in {other} (pixel mean {found['mean']:.2f}" in warning
    assert "dark background), evaluating" in warning and "bright background)" in warning
    assert "warning: " in result.stderr and "the data differ from the data it was trained on" in result.stderr
    table = evaluate(str(trained[0]), "--set", f"data.root={other}")
    assert "the data differ" in " ".join(table.stderr.split()) and "accuracy" in table.stdout


def test_eval_on_its_own_data_or_from_an_older_checkpoint_does_not_warn(trained: tuple[Path, Path],
                                                                        tmp_path: Path) -> None:
    own = evaluate(str(trained[0]), "--json")
    assert own.exit_code == 0 and json.loads(own.stdout)["data_warnings"] == [] and "warning" not in own.stderr
    assert evaluate(str(trained[0]), "--split", "val", "--json").stderr == ""
    few = evaluate(str(trained[0]), "--set", "data.max_test=3", "--json")  # 3 images' mean wanders: no false alarm
    assert json.loads(few.stdout)["data_warnings"] == []
    older = damaged(trained, tmp_path, lambda payload: payload["data"].pop("pixels"))  # written before the stats
    other = inverted_copy(trained[1], tmp_path / "inverted")
    result = evaluate(older, "--set", f"data.root={other}", "--json")
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed["data_warnings"] == [] and printed["pixel_stats"]["trained"] is None and not result.stderr


def test_eval_on_images_of_another_size_warns(tmp_path: Path) -> None:
    """A pixels view reads 28x28 and 14x56 images alike (784 steps): only the warning tells."""
    best = random_checkpoint(tmp_path / "run" / "best.pt", "data.sequence=pixels", "train.device=cpu")
    root = make_dataset(tmp_path / "data", n_train=20, n_test=20)
    images = read_idx(root / FILES["test_images"]).numpy()
    write_idx(root / FILES["test_images"], images.reshape(-1, 14, 56))
    result = evaluate(str(best), "--set", f"data.root={root}", "--json")
    assert result.exit_code == 0, result.output
    [warning] = json.loads(result.stdout)["data_warnings"]
    assert f"(28x28 images), evaluating the test split in {root} (14x56 images)" in warning
