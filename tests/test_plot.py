"""`seqclf plot`: training curves and a confusion matrix rendered to real image files; exit 2 without matplotlib."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import pytest
from helpers import ROOT
from typer.testing import CliRunner

from seqclf.cli.app import app
from seqclf.config import load_config
from seqclf.store import rundir as runs
from seqclf.training.start import train

pytest.importorskip("matplotlib")
runner = CliRunner()
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the IHDR chunk that follows the signature in every valid PNG."""
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def two_runs(module_overrides: list[str]) -> list[Path]:
    """Two finished runs, trained once for the module's tests (which only read them)."""
    base = [*module_overrides, "model.hidden_size=8"]
    return [Path(train(load_config(ROOT / f"configs/{cell}.yaml", base))["run_dir"]) for cell in ("rnn", "gru")]


def test_curves_of_several_runs_render_to_a_png(two_runs: list[Path], tmp_path: Path) -> None:
    from matplotlib.image import imread

    target = tmp_path / "pictures" / "curves.png"
    result = runner.invoke(app, ["plot", *map(str, two_runs), "-o", str(target)])
    assert result.exit_code == 0, result.output
    assert f"wrote {target}" in result.stdout
    width, height = png_size(target)
    assert 600 <= width <= 2000 and 250 <= height <= 1200
    pixels = imread(target)  # matplotlib decodes it: a real image, not just a header
    assert pixels.shape[:2] == (height, width) and 5_000 < target.stat().st_size < 300_000
    assert pixels[..., :3].std() > 0.05  # lines and text drawn, not a blank canvas
    folder = runner.invoke(app, ["plot", str(two_runs[0].parent), "-o", str(tmp_path / "all.svg")])
    assert folder.exit_code == 0 and (tmp_path / "all.svg").read_text().lstrip().startswith("<?xml")


def test_confusion_matrix_renders_to_a_png(two_runs: list[Path], tmp_path: Path) -> None:
    target = tmp_path / "confusion.png"
    result = runner.invoke(app, ["plot", "--confusion", str(two_runs[1] / runs.BEST), "-o", str(target)])
    assert result.exit_code == 0, result.output
    summary = runs.RunDir(two_runs[1]).read_summary()
    assert f"test accuracy {summary['test_accuracy']:.4f}" in result.stdout  # scored like eval
    width, height = png_size(target)
    assert 300 <= width <= 1500 and 300 <= height <= 1500


def test_bad_requests_exit_2(two_runs: list[Path], tmp_path: Path) -> None:
    for args, fragment in [([], "RUN_DIR"), ([str(two_runs[0]), "-o", str(tmp_path / "x.jpg")], ".png"),
                           ([str(tmp_path / "none")], "no such folder"),
                           (["--confusion", str(tmp_path / "none.pt")], "no such checkpoint")]:
        result = runner.invoke(app, ["plot", *args])
        assert result.exit_code == 2 and fragment in result.stderr, result.output


def test_without_matplotlib_it_says_how_to_get_it(two_runs: list[Path], tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [name for name in sys.modules if name == "matplotlib" or name.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now raises ImportError
    result = runner.invoke(app, ["plot", str(two_runs[0]), "-o", str(tmp_path / "curves.png")])
    assert result.exit_code == 2
    assert 'pip install "seqclf[plot]"' in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "curves.png").exists()


def test_mistakes_are_the_most_confident_wrong_predictions(trained, tmp_path: Path) -> None:
    from seqclf.use.evaluate import evaluate_checkpoint
    from seqclf.use.plot import find_mistakes

    checkpoint, _ = trained
    result = runner.invoke(app, ["plot", "--mistakes", str(checkpoint), "-n", "5", "-o", str(tmp_path / "m.png")])
    assert result.exit_code == 0, result.output
    assert png_size(tmp_path / "m.png")[0] > 100
    found = find_mistakes(checkpoint, n=1000)
    scored = evaluate_checkpoint(checkpoint)
    assert found["errors"] == scored["n"] - round(scored["accuracy"] * scored["n"]) == len(found["true"])
    assert all(t != p for t, p in zip(found["true"], found["predicted"]))
    assert found["probability"] == sorted(found["probability"], reverse=True)
    assert found["images"].shape == (found["errors"], 28, 28)
    bad = runner.invoke(app, ["plot", "--mistakes", str(checkpoint), "--confusion", str(checkpoint)])
    assert bad.exit_code == 2


def test_mistakes_compute_as_set_asks(tmp_path: Path) -> None:
    """--set model.impl, train.precision and train.device reach the model that finds the mistakes, as in eval."""
    import dataclasses

    import numpy as np
    import torch
    from helpers import make_dataset, random_checkpoint

    from seqclf.data.datasets import split_images
    from seqclf.model.classifier import SequenceClassifier
    from seqclf.store import checkpoint
    from seqclf.use.plot import find_mistakes
    from seqclf.use.predict import Predictor

    root = make_dataset(tmp_path / "data", n_train=50)
    path = random_checkpoint(tmp_path / "best.pt", f"data.root={root}", "data.val_size=10", "train.device=cpu")
    saved = checkpoint.read(path)
    images, labels = split_images(saved.config.data, saved.config.seed, "test")

    def confidences(predictor: Predictor) -> list[float]:  # of the wrong predictions, as find_mistakes orders them
        probabilities = predictor.probabilities(images)
        wrong = np.flatnonzero(probabilities.argmax(1) != labels.numpy())
        return sorted(probabilities.max(1)[wrong].tolist(), reverse=True)

    fused = find_mistakes(path, n=1000)["probability"]
    assert fused == confidences(Predictor.from_checkpoint(path)) and len(fused) > 50  # random weights: many
    in_bf16 = find_mistakes(path, n=1000, overrides=["train.precision=bf16"])["probability"]
    assert in_bf16 == confidences(Predictor.from_checkpoint(path, precision="bf16")) != fused
    scratch = SequenceClassifier(dataclasses.replace(saved.config.model, impl="scratch"), saved.data.input_size, 10)
    scratch.load_state_dict(saved.model)
    by_hand = find_mistakes(path, n=1000, overrides=["model.impl=scratch"])["probability"]
    assert by_hand == confidences(Predictor(scratch, saved.config, saved.data, torch.device("cpu")))
    missing = runner.invoke(app, ["plot", "--mistakes", str(path), "--set", "train.device=cuda:99",
                                  "-o", str(tmp_path / "m.png")])
    assert missing.exit_code == 2 and "cuda:99" in missing.stderr, missing.output
    assert not (tmp_path / "m.png").exists()


def test_eval_shows_class_names(trained) -> None:
    from seqclf.data.datasets import class_names

    checkpoint, _ = trained
    result = runner.invoke(app, ["eval", str(checkpoint)])
    assert result.exit_code == 0, result.output
    assert "confusion matrix" in result.stdout and "per-class accuracy" in result.stdout
    assert class_names("fashion_mnist", 10)[0] == "T-shirt/top" and class_names("kmnist", 10)[-1] == "wo"
    assert class_names("idx", 3) == ["0", "1", "2"] and class_names("mnist", 10)[9] == "9"
def test_rows_without_a_metric_and_unwritable_outputs(tmp_path: Path) -> None:
    from helpers import epoch, fake_run

    partial = [epoch(1, 0.5), {k: v for k, v in epoch(2, 0.6).items() if k != "train_loss"},
               {**epoch(3, 0.7), "val_loss": "n/a"}]
    run_dir = fake_run(tmp_path / "runs", "edited", ["model.cell=gru"], None, partial)
    drawn = runner.invoke(app, ["plot", str(run_dir), "-o", str(tmp_path / "curves.png")])
    assert drawn.exit_code == 0 and png_size(tmp_path / "curves.png")[0] > 0, drawn.output
    (tmp_path / "folder.png").mkdir()
    (tmp_path / "a-file").write_text("")
    for target, fragment in [(tmp_path / "folder.png", "is a folder; give a file name"),
                             (tmp_path / "a-file" / "c.png", "choose another path with -o")]:
        refused = runner.invoke(app, ["plot", str(run_dir), "-o", str(target)])
        assert refused.exit_code == 2 and fragment in refused.stderr, refused.output
        assert "output.dir" not in refused.stderr  # the hint is about -o, not about training's output folder


def test_plot_writes_through_a_link_and_refuses_a_fifo(tmp_path: Path) -> None:
    import os

    from helpers import epoch, fake_run

    run_dir = fake_run(tmp_path / "runs", "r", ["model.cell=gru"], None, [epoch(1, 0.5), epoch(2, 0.6)])
    (tmp_path / "figures").mkdir()
    (tmp_path / "curves.png").symlink_to(tmp_path / "figures" / "curves.png")
    drawn = runner.invoke(app, ["plot", str(run_dir), "-o", str(tmp_path / "curves.png")])
    assert drawn.exit_code == 0, drawn.output
    assert (tmp_path / "curves.png").is_symlink() and png_size(tmp_path / "figures" / "curves.png")[0] > 0
    os.mkfifo(tmp_path / "pipe.png")
    refused = runner.invoke(app, ["plot", str(run_dir), "-o", str(tmp_path / "pipe.png")])
    assert refused.exit_code == 2 and "not a regular file (a FIFO)" in refused.stderr, refused.output


def test_the_study_plots_trial_axis_has_whole_numbers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from seqclf.use import plot

    drawn: list = []
    save = plot.save_figure
    monkeypatch.setattr(plot, "save_figure", lambda figure, path: drawn.append(figure) or save(figure, path))
    trials = [{"number": n, "state": "complete", "value": v, "values": {"accuracy": v}, "params": {}, "run_dir": None}
              for n, v in ((0, 0.5), (1, 0.62), (2, 0.6))]  # 3 trials: matplotlib's own ticks are 0, 0.25, 0.5...
    info = {"study": "s", "objectives": ["accuracy"], "trials": trials, "complete": 3, "pruned": 0, "failed": 0,
            "importances": {"train.lr": 0.7, "model.cell": 0.3}}
    plot.plot_study(info, tmp_path / "study.png")
    history, importances = drawn[0].axes[:2]
    assert importances.get_title() == "parameter importances (rough: only 3 complete trials)"
    assert history.get_xlabel() == "trial"
    ticks = [t for t in history.get_xticks() if history.get_xlim()[0] <= t <= history.get_xlim()[1]]
    assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks), ticks


@pytest.mark.parametrize("epochs", [1, 3, 30])
def test_epoch_axes_show_whole_epochs_even_for_a_run_of_one(epochs: int) -> None:
    """One epoch: matplotlib's own ticks read 0.96, 0.98, 1.00..., as if a run had half epochs."""
    from helpers import epoch

    from seqclf.use.figures import draw_curves

    histories = [("run", [epoch(n, 0.5 + n / 100) for n in range(1, epochs + 1)])]
    figure = draw_curves(histories)
    figure.canvas.draw()
    for axes in figure.axes:
        low, high = axes.get_xlim()
        ticks = [t for t in axes.get_xticks() if low <= t <= high]
        assert ticks and all(float(t).is_integer() for t in ticks), (axes.get_title(), ticks)
        if epochs == 1:
            assert ticks == [1], ticks
