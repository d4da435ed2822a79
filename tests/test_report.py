"""seqclf report: one self-contained HTML page per run (or a comparison of several), checked as text and
in a real browser (headless Chromium, network off): no console errors, every image decodes."""

from __future__ import annotations

import base64
import html.parser
import json
import shutil
from pathlib import Path

import pytest
from browser import Browser, find_chromium
from helpers import ROOT, cli_json, fake_run, make_dataset, posix_only, train_tiny
from typer.testing import CliRunner

from seqclf.cli.app import app
from seqclf.use.evaluate import evaluate_checkpoint

runner = CliRunner()
ARTIFACTS = ROOT / "tests" / "artifacts"  # screenshots kept for a person to look at (ignored by git)


class Page(html.parser.HTMLParser):
    """Every tag with its attributes, and the text."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


@pytest.fixture(scope="module")
def three_runs(trained: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The session's trained LSTM run, a GRU and a run read by columns, on the same tiny data."""
    checkpoint, root = trained
    out = tmp_path_factory.mktemp("report-runs")
    others = [train_tiny(root, out, "model.cell=gru", "train.epochs=1"),
              train_tiny(root, out, "data.sequence=columns", "train.epochs=1")]
    return [checkpoint.parent] + [path.parent for path in others]


def write_report(runs: list[Path], output: Path) -> tuple[Path, dict]:
    return output, cli_json("report", *map(str, runs), "-o", str(output))


@pytest.fixture(scope="module")
def one_run_report(three_runs: list[Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The report of the GRU (trained one epoch, it makes mistakes to show), written once for the module."""
    return write_report(three_runs[1:2], tmp_path_factory.mktemp("report-1") / "report.html")


@pytest.fixture(scope="module")
def three_run_report(three_runs: list[Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    return write_report(three_runs, tmp_path_factory.mktemp("report-3") / "three.html")


def self_contained(text: str) -> Page:
    """The page's checks that need no browser: nothing fetched, no script, every image an inline PNG."""
    page = Page(text)
    for tag, attrs in page.tags:
        assert tag not in ("script", "link", "iframe", "object", "embed"), tag
        for name in ("src", "href", "srcset", "data"):
            value = attrs.get(name) or ""
            assert "http://" not in value and "https://" not in value and "//" != value[:2], (tag, name, value)
    images = [attrs["src"] for tag, attrs in page.tags if tag == "img"]
    assert images
    for source in images:
        assert source.startswith("data:image/png;base64,")
        assert base64.b64decode(source.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert "http://" not in text and "https://" not in text and "url(" not in text
    return page


def test_one_run_report_has_every_part_and_fetches_nothing(three_runs: list[Path],
                                                           one_run_report: tuple[Path, dict]) -> None:
    run_dir = three_runs[1]
    output, result = one_run_report
    assert result == {"output": str(output), "runs": [str(run_dir)], "bytes": output.stat().st_size}
    text = output.read_text()
    assert output.stat().st_size < 5_000_000
    page = self_contained(text)
    words = " ".join(page.text)
    for part in ("Config", "closest shipped config, gru", "Training curves", "per class", "precision", "recall",
                 "F1", "confusion matrix", "calibration", "Reading", "trace of the first 4 test examples",
                 "Most confident mistakes"):
        assert part in words, part
    scores = evaluate_checkpoint(run_dir / "best.pt")
    assert f"accuracy {scores['accuracy']:.4f}" in words and f"{scores['calibration']['ece']:.4f}" in words
    assert "data.root" in words  # the run's data lives elsewhere than the shipped config says
    seconds = json.loads((run_dir / "summary.json").read_text())["seconds"]
    assert f"{seconds:.1f} s" in words  # to a tenth, as seqclf runs shows it (a tiny run is not "0 s")
    alts = [attrs.get("alt") for tag, attrs in page.tags if tag == "img"]
    assert "reliability diagram" in alts and "accuracy by rows read" in alts
    assert len([alt for alt in alts if alt and alt.startswith("true ")]) == 16  # the mistakes, as images


def test_names_are_escaped(three_runs: list[Path], tmp_path: Path) -> None:
    odd = tmp_path / 'runs <x-a>&"q'
    shutil.copytree(three_runs[2], odd / "r<x-b>n")
    output = tmp_path / "odd.html"
    cli_json("report", str(odd / "r<x-b>n"), "-o", str(output))
    text = output.read_text()
    assert "<x-" not in text and "r&lt;x-b&gt;n" in text and "&lt;x-a&gt;&amp;&quot;q" in text
    self_contained(text)


def test_report_of_three_runs_compares_them(three_runs: list[Path], three_run_report: tuple[Path, dict]) -> None:
    output, result = three_run_report
    assert result["runs"] == [str(run) for run in three_runs]
    page = self_contained(output.read_text())
    rows = [attrs for tag, attrs in page.tags if tag == "tr"]
    words = " ".join(page.text)
    assert "3 runs" in words and "Config keys that differ" in words and "model.cell" in words
    assert "data.sequence" in words and len(rows) >= 4
    alts = [attrs.get("alt") for tag, attrs in page.tags if tag == "img"]
    assert alts.count("training curves of the runs") == 1
    assert "accuracy by rows read" in alts and "accuracy by columns read" in alts


def test_a_comparisons_chart_names_its_run_even_when_it_is_the_only_one_read_that_way() -> None:
    """Of three runs, the one read by columns has a chart of its own: without a legend it is anyone's."""
    from seqclf.use.figures import draw_accuracy_by_step

    alone = draw_accuracy_by_step([("lstm-1x16-columns-s0", [0.3, 0.5])], "column", legend=True)
    assert [text.get_text() for text in alone.axes[0].get_legend().get_texts()] == ["lstm-1x16-columns-s0"]
    assert draw_accuracy_by_step([("best.pt", [0.3, 0.5])], "row").axes[0].get_legend() is None  # one run's page


def test_a_run_without_an_epoch_and_bad_arguments(tmp_path: Path) -> None:
    run_dir = fake_run(tmp_path / "runs", "stopped", ["model.cell=gru"])
    output = tmp_path / "stopped.html"
    cli_json("report", str(run_dir), "-o", str(output))
    words = " ".join(self_contained_text(output))
    assert "No finished epoch yet" in words and "best.pt" in words
    for args, named in ((["report", str(tmp_path / "nothing")], "nothing"),
                        (["report", str(run_dir), "-o", str(tmp_path / "r.txt")], "r.txt"),
                        (["report", str(run_dir), "--split", "train"], "train"),
                        (["report", str(run_dir), "--set", "model.cell=rnn", "-o", str(output)], "model.cell")):
        refused = runner.invoke(app, args)
        assert refused.exit_code == 2 and named in refused.stderr and "Traceback" not in refused.output, args


def self_contained_text(path: Path) -> list[str]:
    page = Page(path.read_text())
    assert not [tag for tag, _ in page.tags if tag == "script"]
    return page.text


def test_missing_data_is_one_message(three_runs: list[Path], tmp_path: Path) -> None:
    moved = tmp_path / "elsewhere"
    make_dataset(moved, n_train=100, n_test=20)
    refused = runner.invoke(app, ["report", str(three_runs[0]), "-o", str(tmp_path / "r.html"),
                                  "--set", f"data.root={tmp_path / 'gone'}"])
    assert refused.exit_code == 2 and "gone" in refused.stderr and "Traceback" not in refused.output
    cli_json("report", str(three_runs[0]), "-o", str(tmp_path / "r.html"), "--set", f"data.root={moved}")


@posix_only  # the browser is driven through a pipe on file descriptors 3 and 4
@pytest.mark.parametrize("runs", [1, 3])
def test_the_report_in_headless_chromium(request: pytest.FixtureRequest, tmp_path: Path, runs: int) -> None:
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("no Chromium (Debian: apt-get install chromium; .ci/run installs it)")
    output, _ = request.getfixturevalue("one_run_report" if runs == 1 else "three_run_report")
    browser = Browser(chromium, tmp_path / "profile")
    try:
        browser.open(output)
        widths = browser.evaluate("Promise.all([...document.images].map("
                                  "image => image.decode().then(() => image.naturalWidth, () => 0)))")
        shot = browser.screenshot(tmp_path / f"report-{runs}.png")
        problems = browser.problems()
        requested = browser.requested_urls()
    finally:
        browser.close()
    assert widths and all(width > 0 for width in widths), widths
    assert problems == [], problems
    assert requested and all(url.startswith(("file:", "data:")) for url in requested), requested
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    ARTIFACTS.mkdir(exist_ok=True)
    kept = shutil.copy(shot, ARTIFACTS / shot.name)
    print(f"screenshot: {kept}")
