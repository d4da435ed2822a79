"""`seqclf predict` and the Predictor API: agreement with eval, output formats, bad inputs, the docs' example."""

from __future__ import annotations

import csv
import io
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from helpers import ROOT, changed_checkpoint, random_checkpoint
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from seqclf import Predictor, SeqclfError
from seqclf.cli.app import app
from seqclf.data.idx import read_idx
from seqclf.use.evaluate import evaluate_checkpoint

runner = CliRunner()


def test_predict_on_the_idx_test_split_gives_evals_confusion_matrix(trained: tuple[Path, Path]) -> None:
    checkpoint, root = trained
    test_file = root / "t10k-images-idx3-ubyte"
    records = Predictor.from_checkpoint(checkpoint).predict([test_file])
    labels = read_idx(root / "t10k-labels-idx1-ubyte").tolist()
    assert [r["input"] for r in records] == [f"{test_file}#{i}" for i in range(len(labels))]
    confusion = np.zeros((10, 10), int)
    for record, label in zip(records, labels):
        confusion[label, record["predicted_label"]] += 1
    result = evaluate_checkpoint(checkpoint)
    assert confusion.tolist() == result["confusion_matrix"]
    assert result["class_names"] == [str(k) for k in range(10)]


def test_cli_json_and_csv_share_records_and_top_k(trained: tuple[Path, Path], tmp_path: Path) -> None:
    checkpoint, root = trained
    batch = read_idx(root / "t10k-images-idx3-ubyte").numpy()[:5]
    np.save(tmp_path / "five.npy", batch)
    result = runner.invoke(app, ["predict", str(checkpoint), str(tmp_path / "five.npy"), "--top-k", "3", "--json"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert set(printed) == {"checkpoint", "predictions", "errors", "warnings"} and printed["errors"] == []
    for record in printed["predictions"]:
        assert set(record) == {"input", "predicted_label", "predicted_class", "probability", "top_k",
                               "label", "class"}  # label and class: deprecated copies of the predicted ones
        assert [g["probability"] for g in record["top_k"]] == sorted((g["probability"] for g in record["top_k"]),
                                                                      reverse=True)
        assert len(record["top_k"]) == 3 and record["top_k"][0]["predicted_label"] == record["predicted_label"]
        assert record["predicted_class"] == str(record["predicted_label"])
    probabilities = Predictor.from_checkpoint(checkpoint).probabilities(batch)
    assert [r["predicted_label"] for r in printed["predictions"]] == probabilities.argmax(1).tolist()
    result = runner.invoke(app, ["predict", str(checkpoint), str(tmp_path / "five.npy"), "--csv"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert list(rows[0]) == ["input", "predicted_label", "predicted_class", "probability", "label", "class"]
    assert [row["input"] for row in rows] == [f"{tmp_path / 'five.npy'}#{i}" for i in range(5)]
    table = runner.invoke(app, ["predict", str(checkpoint), str(tmp_path / "five.npy"), "--top-k", "2"])
    assert table.exit_code == 0 and "five.npy#4" in table.stdout


def test_every_bad_input_is_named_and_the_good_ones_still_printed(trained: tuple[Path, Path], tmp_path: Path) -> None:
    checkpoint, root = trained
    good = tmp_path / "seven.png"
    image = Image.new("L", (60, 80), 255)
    ImageDraw.Draw(image).line([(10, 10), (50, 10), (20, 70)], fill=0, width=6)
    image.save(good)
    bad = {"text.png": "not an image", "blank.png": "blank", "wrong.npy": "(3, 5)", "empty": "no images",
           "missing.png": "no such file", "labels": "labels", "cut.gz": "gzip"}
    (tmp_path / "text.png").write_text("hello")
    Image.new("RGB", (40, 40), (90, 90, 90)).save(tmp_path / "blank.png")
    np.save(tmp_path / "wrong.npy", np.zeros((3, 5)))
    (tmp_path / "empty").mkdir()
    (tmp_path / "labels").write_bytes((root / "t10k-labels-idx1-ubyte").read_bytes())
    (tmp_path / "cut.gz").write_bytes(b"\x1f\x8b\x08\x00 cut short")
    args = ["predict", str(checkpoint), str(good), *(str(tmp_path / name) for name in bad)]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 2
    printed = json.loads(result.stdout)
    assert [r["input"] for r in printed["predictions"]] == [str(good)]
    errors = {Path(e["input"]).name: e["error"] for e in printed["errors"]}
    assert set(errors) == set(bad)
    for name, why in bad.items():
        assert why in errors[name], (name, errors[name])
        assert f"{tmp_path / name}: " in result.stderr  # a message naming the input on stderr
    assert "Traceback" not in result.output
    only_good = runner.invoke(app, ["predict", str(checkpoint), str(good)])
    assert only_good.exit_code == 0 and "seven.png" in only_good.stdout


def test_bad_checkpoint_and_options_exit_2(trained: tuple[Path, Path], tmp_path: Path) -> None:
    checkpoint, _ = trained
    for args in (["predict", str(tmp_path / "none.pt"), str(checkpoint)],
                 ["predict", str(checkpoint), str(checkpoint), "--json", "--csv"],
                 ["predict", str(checkpoint), str(checkpoint), "--top-k", "0"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert "Traceback" not in result.output
    predictor = Predictor.from_checkpoint(checkpoint)
    with pytest.raises(SeqclfError, match=r"\(N, 28, 28\) uint8"):
        predictor.probabilities(np.zeros((2, 28, 28), np.float32))
    with pytest.raises(SeqclfError, match="blank"):
        predictor.predict([Image.new("L", (30, 30), 0)])


def test_the_documented_api_example_runs(trained: tuple[Path, Path], tmp_path: Path, capsys) -> None:
    checkpoint, _ = trained
    image = Image.new("L", (60, 80), 255)
    ImageDraw.Draw(image).line([(30, 5), (30, 75)], fill=0, width=7)
    image.save(tmp_path / "digit.png")
    snippets = []
    for doc in (ROOT / "README.md", ROOT / "docs/use-a-trained-model.md"):
        found = re.findall(r"```python\n(from seqclf import Predictor\n.*?)```", doc.read_text(), re.DOTALL)
        assert found, doc
        snippets.append(found[0])
    assert snippets[0] == snippets[1] and len(snippets[0].strip().splitlines()) == 5
    (tmp_path / "runs" / "my-run").mkdir(parents=True)
    os.link(checkpoint, tmp_path / "runs" / "my-run" / "best.pt")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        exec(compile(snippets[0], "docs example", "exec"), {})
    finally:
        os.chdir(cwd)
    name, label, probability = capsys.readouterr().out.split()
    assert name == "digit.png" and label in [str(k) for k in range(10)] and 0 < float(probability) <= 1


def test_a_checkpoint_from_before_class_names_predicts(tmp_path: Path) -> None:
    old = ROOT / "tests" / "data" / "v1run" / "best.pt"  # checkpoint format version 1: no class names or size
    np.save(tmp_path / "two.npy", np.zeros((2, 28, 28), np.uint8))
    result = runner.invoke(app, ["predict", str(old), str(tmp_path / "two.npy"), "--json"])
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)["predictions"]
    assert len(records) == 2 and all(r["predicted_class"] == str(r["predicted_label"]) for r in records)


@pytest.fixture(scope="module")
def random_best(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A best.pt of an untrained model: for checks of arguments, which need no training."""
    return random_checkpoint(tmp_path_factory.mktemp("predict-args") / "best.pt")


@pytest.mark.parametrize("batch_size", [-1, 0, 2.5, True, "8"])
def test_a_batch_size_that_is_not_a_positive_int_is_refused_by_every_method(random_best: Path,
                                                                             batch_size: object) -> None:
    predictor = Predictor.from_checkpoint(random_best)
    images = np.zeros((3, 28, 28), np.uint8)
    for call in (predictor.predict, predictor.probabilities, predictor.logits, predictor.logits_by_step):
        with pytest.raises(SeqclfError, match=rf"batch_size={re.escape(repr(batch_size))}: give a positive whole"):
            call(images, batch_size=batch_size)


def test_bad_predictor_arguments_raise_a_seqclf_error_naming_them(random_best: Path) -> None:
    with pytest.raises(SeqclfError, match="'tpu' is not a device seqclf runs on; use auto, cpu"):
        Predictor.from_checkpoint(random_best, device="tpu")
    with pytest.raises(SeqclfError, match="precision='fp8': choose one of fp32, bf16, fp16"):
        Predictor.from_checkpoint(random_best, precision="fp8")
    predictor = Predictor.from_checkpoint(random_best)
    with pytest.raises(SeqclfError, match="top_k='3': give a positive whole number"):
        predictor.predict(np.zeros((28, 28), np.uint8), top_k="3")
    with pytest.raises(SeqclfError, match="an image of 0x0 pixels"):
        predictor.predict([Image.new("L", (0, 0))])
    with pytest.raises(SeqclfError, match=r"array\[0\]: an array of shape \(0, 0\)"):
        predictor.predict([np.zeros((0, 0), np.uint8)])
    images = np.random.default_rng(0).integers(0, 256, (2, 28, 28), dtype=np.uint8)
    flipped = images[:, ::-1, ::-1]  # negative strides: a view, as np.flip gives
    assert np.array_equal(predictor.probabilities(flipped), predictor.probabilities(flipped.copy()))


def test_a_checkpoint_with_nan_weights_is_refused_by_predict(random_best: Path, tmp_path: Path) -> None:
    def poison(payload: dict) -> None:
        next(iter(payload["model"].values())).view(-1)[0] = float("nan")

    broken = changed_checkpoint(random_best, tmp_path / "nan.pt", poison)
    np.save(tmp_path / "one.npy", np.zeros((28, 28), np.uint8))
    with pytest.raises(SeqclfError, match="NaN or infinite values"):
        Predictor.from_checkpoint(broken)
    result = runner.invoke(app, ["predict", broken, str(tmp_path / "one.npy")])
    assert result.exit_code == 2 and "nan.pt: its weights hold NaN" in result.output
    assert "probability" not in result.stdout and "Traceback" not in result.output


# ---------------------------------------------------------------- issue 23: names, polarity, --labels


def as_png_files(root: Path, folder: Path, by_class: bool, invert: bool = False) -> list[tuple[Path, int]]:
    """The test split of make_dataset's data at root as 28x28 PNG files (in folders named by class)."""
    images = read_idx(root / "t10k-images-idx3-ubyte").numpy()
    labels = read_idx(root / "t10k-labels-idx1-ubyte").tolist()
    written = []
    for i, (image, label) in enumerate(zip(images, labels)):
        path = folder / (str(label) if by_class else "") / f"{i:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(255 - image if invert else image).save(path)
        written.append((path, label))
    return written


def test_predictions_say_predicted_and_keep_the_old_names_one_release(trained: tuple[Path, Path],
                                                                       tmp_path: Path) -> None:
    checkpoint, root = trained
    np.save(tmp_path / "two.npy", read_idx(root / "t10k-images-idx3-ubyte").numpy()[:2])
    printed = json.loads(runner.invoke(app, ["predict", str(checkpoint), str(tmp_path / "two.npy"), "--json",
                                             "--top-k", "2"]).stdout)
    for record in printed["predictions"]:
        assert {"predicted_label", "predicted_class", "label", "class"} <= set(record)
        assert (record["label"], record["class"]) == (record["predicted_label"], record["predicted_class"])
        assert all(g["predicted_class"] == g["class"] for g in record["top_k"])
    result = runner.invoke(app, ["predict", str(checkpoint), str(tmp_path / "two.npy"), "--csv"])
    assert result.stdout.splitlines()[0] == "input,predicted_label,predicted_class,probability,label,class"
    table = runner.invoke(app, ["predict", str(checkpoint), str(tmp_path / "two.npy")])
    assert re.match(r"input\s+predicted\s+probability\n", table.stdout) and "label" not in table.stdout


def test_no_preprocess_of_dark_ink_on_light_paper_warns(trained: tuple[Path, Path], tmp_path: Path) -> None:
    checkpoint, root = trained
    as_png_files(root, tmp_path / "paper", by_class=False, invert=True)
    as_png_files(root, tmp_path / "dataset", by_class=False)
    result = runner.invoke(app, ["predict", str(checkpoint), str(tmp_path / "paper"), "--no-preprocess", "--json"])
    assert result.exit_code == 0, result.output
    [warning] = json.loads(result.stdout)["warnings"]
    assert re.match(r"\d+ of 200 inputs have a bright background \(.*paper/000.png", warning), warning
    assert "trained on have a dark one" in warning and "drop --no-preprocess" in warning
    assert "warning: " in result.stderr and "invert them" in " ".join(result.stderr.split())
    for args in ([str(tmp_path / "paper")], [str(tmp_path / "dataset"), "--no-preprocess"]):  # preprocessed; alike
        fine = runner.invoke(app, ["predict", str(checkpoint), *args, "--json"])
        assert fine.exit_code == 0 and json.loads(fine.stdout)["warnings"] == [] and not fine.stderr, args
    np.save(tmp_path / "negative.npy", 255 - read_idx(root / "t10k-images-idx3-ubyte").numpy()[:3])
    old = ROOT / "tests" / "data" / "v1run" / "best.pt"  # no stats recorded: its normalization's mean tells
    for model in (checkpoint, old):
        [warning] = predict_warnings(model, tmp_path / "negative.npy")
        assert "3 of 3 inputs have a bright background" in warning and "--no-preprocess" not in warning


def predict_warnings(checkpoint: Path, *inputs: Path) -> list[str]:
    from seqclf.use.predict import predict_files

    return predict_files(checkpoint, list(inputs))["warnings"]


def test_labels_from_folders_or_a_csv_score_as_eval_does(trained: tuple[Path, Path], tmp_path: Path) -> None:
    checkpoint, root = trained
    expected = evaluate_checkpoint(checkpoint)
    as_png_files(root, tmp_path / "byclass", by_class=True)
    flat = as_png_files(root, tmp_path / "flat", by_class=False)
    names = expected["class_names"]
    (tmp_path / "flat" / "labels.csv").write_text("file,label\n" + "".join(f"{p.name},{names[k]}\n" for p, k in flat))
    (tmp_path / "idx.csv").write_text("".join(f"{root / 't10k-images-idx3-ubyte'}#{i},{k}\n"
                                              for i, (_, k) in enumerate(flat)))
    for args in ([str(tmp_path / "byclass"), "--labels", "folders"],
                 [*(str(tmp_path / "byclass" / name) for name in names), "--labels", "folders"],
                 [str(tmp_path / "flat"), "--labels", str(tmp_path / "flat" / "labels.csv")],
                 [str(root / "t10k-images-idx3-ubyte"), "--labels", str(tmp_path / "idx.csv")]):
        result = runner.invoke(app, ["predict", str(checkpoint), *args, "--no-preprocess", "--json"])
        assert result.exit_code == 0, (args, result.output)
        printed = json.loads(result.stdout)
        scores = printed["scores"]
        assert scores["confusion_matrix"] == expected["confusion_matrix"] and scores["n"] == 200, args
        assert scores["accuracy"] == expected["accuracy"] and scores["loss"] == pytest.approx(expected["loss"])
        assert scores["per_class_accuracy"] == expected["per_class_accuracy"] and scores["class_names"] == names
        assert all(r["correct"] == (r["true_label"] == r["predicted_label"]) for r in printed["predictions"])
        assert printed["warnings"] == []  # class 0's bar and stripe touch two edges: not a negative
    table = runner.invoke(app, ["predict", str(checkpoint), str(tmp_path / "byclass"), "--labels", "folders",
                                "--no-preprocess"])
    assert table.exit_code == 0 and "true class" in table.stdout and "confusion matrix" in table.stdout
    assert f"accuracy {expected['accuracy']:.4f}" in table.stdout
    listing = runner.invoke(app, ["predict", str(checkpoint), str(tmp_path / "byclass"), "--labels", "folders",
                                  "--csv", "--no-preprocess"])
    assert listing.stdout.splitlines()[0].endswith(",probability,true_label,true_class,correct,label,class")


def test_labels_that_do_not_fit_are_a_message_and_exit_2(trained: tuple[Path, Path], tmp_path: Path) -> None:
    checkpoint, root = trained
    flat = as_png_files(root, tmp_path / "flat", by_class=False)[:3]
    folder = tmp_path / "flat"
    cases = {
        "file,label\n000.png,0\n001.png,Sneaker\n002.png,12\n":
            "labels that are not classes of the model (line 3: 'Sneaker', line 4: '12'); the model's classes are 0,",
        "000.png,0\n001.png,1\n": "1 of the 3 inputs have no row in it",
        "000.png,0\n001.png\n002.png,1,extra\n": "line 2, line 3: each row should be two fields, file,label",
        "": "holds no rows",
    }
    for text, fragment in cases.items():
        (folder / "labels.csv").write_text(text)
        result = runner.invoke(app, ["predict", str(checkpoint), *(str(p) for p, _ in flat), "--labels",
                                     str(folder / "labels.csv")])
        assert result.exit_code == 2 and fragment in " ".join(result.stderr.split()), (text, result.output)
        assert f"--labels {folder / 'labels.csv'}: " in result.stderr and "Traceback" not in result.output
    missing = runner.invoke(app, ["predict", str(checkpoint), str(flat[0][0]), "--labels", str(tmp_path / "no.csv")])
    assert missing.exit_code == 2 and "no such file" in missing.stderr
    elsewhere = runner.invoke(app, ["predict", str(checkpoint), str(folder), "--labels", "folders"])
    assert elsewhere.exit_code == 2 and "200 of the 200 inputs lie in no folder named by a class" in \
        " ".join(elsewhere.stderr.split()) and "Traceback" not in elsewhere.output
