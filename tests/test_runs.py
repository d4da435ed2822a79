"""The run table (`seqclf runs`), group-by, config show/validate/diff, run directories under parallel starts,
hidden_size auto, and the per-epoch gradient statistics."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import statistics
import threading
import time
from pathlib import Path

import pytest
import yaml
from helpers import ROOT, epoch, fake_run, set_args
from typer.testing import CliRunner

from seqclf.cli.app import app
from seqclf.config import ModelConfig, config_diff, load_config
from seqclf.config import shipped as shipped_configs
from seqclf.console import Output
from seqclf.errors import SeqclfError
from seqclf.model.classifier import parameter_count, resolve_hidden_size
from seqclf.store import lock as runlock
from seqclf.store import removal
from seqclf.store import rundir as runs
from seqclf.store import table as runs_table
from seqclf.training.start import train
from seqclf.use.evaluate import evaluate_checkpoint

runner = CliRunner()


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """runs/: gru x3 seeds and rnn x2 seeds in a sweep folder, an lstm at top level, a killed run, clutter."""
    root = tmp_path / "runs"
    for seed, acc in [(0, 0.80), (1, 0.90), (2, 0.85)]:
        fake_run(root / "sweep", f"gru-s{seed}", ["model.cell=gru", f"seed={seed}"],
                 {"test_accuracy": acc, "val_accuracy": acc + 0.01, "seconds": 10.0 + seed, "parameters": 2378})
    for seed, acc in [(0, 0.70), (1, 0.60)]:
        fake_run(root / "sweep", f"rnn-s{seed}", ["model.cell=rnn", f"seed={seed}"],
                 {"test_accuracy": acc, "val_accuracy": acc, "parameters": 906})
    fake_run(root, "lstm-2x64-bi", ["model.cell=lstm", "model.num_layers=2", "model.hidden_size=64",
                                    "model.bidirectional=true"], {"test_accuracy": 0.95, "epochs": 8})
    killed = fake_run(root, "lstm-killed", ["model.cell=lstm"], None, [epoch(1, 0.6, 3.0), epoch(2, 0.7, 4.0)])
    (killed / runs.LAST).write_bytes(b"")
    (root / "sweep" / "logs").mkdir()
    (root / "sweep" / "logs" / "gru.log").write_text("not a run\n")
    (root / "notes.txt").write_text("not a run\n")
    return root


def by_name(rows: list[dict]) -> dict[str, dict]:
    return {row["name"]: row for row in rows}


def test_listing_reads_every_run_one_level_down(sweep: Path) -> None:
    rows = by_name([record.row for record in runs_table.list_runs(sweep)])
    assert set(rows) == {"sweep/gru-s0", "sweep/gru-s1", "sweep/gru-s2", "sweep/rnn-s0", "sweep/rnn-s1",
                         "lstm-2x64-bi", "lstm-killed"}
    assert all(list(row) == list(runs_table.FIELDS) for row in rows.values())
    assert rows["lstm-2x64-bi"] == {"name": "lstm-2x64-bi", "dataset": "mnist", "sequence": "rows", "cell": "lstm",
                                    "num_layers": 2, "hidden_size": 64, "bidirectional": True, "lr": 0.001, "seed": 0,
                                    "parameters": 1000, "epochs": 8, "val_accuracy": 0.5, "test_accuracy": 0.95,
                                    "seconds": 10.0, "status": "finished"}
    assert rows["sweep/gru-s1"]["test_accuracy"] == 0.90 and rows["sweep/gru-s1"]["cell"] == "gru"


def test_a_killed_run_without_summary_shows_what_its_files_say(sweep: Path) -> None:
    killed = by_name([record.row for record in runs_table.list_runs(sweep)])["lstm-killed"]
    assert killed["status"] == "interrupted"  # it left last.pt: resumable
    assert killed["epochs"] == 2 and killed["val_accuracy"] == 0.7 and killed["seconds"] == 7.0
    assert killed["test_accuracy"] is None and killed["parameters"] is None
    (sweep / "lstm-killed" / runs.LAST).unlink()
    assert runs_table.describe_run(sweep / "lstm-killed", sweep).row["status"] == "failed"


def test_group_by_gives_count_mean_and_sample_std(sweep: Path) -> None:
    records = runs_table.list_runs(sweep / "sweep")
    groups = {row["model.cell"]: row for row in runs_table.group_runs(records, ["model.cell", "model.bidirectional"])}
    gru, rnn = groups["gru"], groups["rnn"]
    assert gru["count"] == 3 and rnn["count"] == 2
    assert gru["test_accuracy"] == pytest.approx(0.85)
    assert gru["test_accuracy_std"] == pytest.approx(statistics.stdev([0.80, 0.90, 0.85]))  # 0.05
    assert gru["seconds"] == pytest.approx(11.0) and gru["seconds_std"] == pytest.approx(1.0)
    assert gru["parameters"] == 2378 and gru["model.bidirectional"] is False
    assert rnn["test_accuracy"] == pytest.approx(0.65) and rnn["test_accuracy_std"] == pytest.approx(0.0707107)
    assert gru["differs"] == [] and gru["runs"] == ["gru-s0", "gru-s1", "gru-s2"]
    single = runs_table.group_runs(runs_table.list_runs(sweep / "lstm-2x64-bi"), ["model.cell"])[0]
    assert single["count"] == 1 and single["test_accuracy_std"] is None
    # Grouping only by cell merges the 2x64 lstm with the 1x128 one: the row says what else varies.
    lstm = [row for row in runs_table.group_runs(runs_table.list_runs(sweep), ["model.cell"])
            if row["model.cell"] == "lstm"][0]
    assert lstm["differs"] == ["model.bidirectional", "model.hidden_size", "model.num_layers"]


def test_sort_puts_the_best_accuracy_first_and_missing_values_last(sweep: Path) -> None:
    rows = [record.row for record in runs_table.list_runs(sweep)]
    ordered = [row["name"] for row in runs_table.sort_rows(rows, "test_accuracy")]
    assert ordered[:3] == ["lstm-2x64-bi", "sweep/gru-s1", "sweep/gru-s2"] and ordered[-1] == "lstm-killed"
    ascending = [row["name"] for row in runs_table.sort_rows(rows, "test_accuracy", reverse=True)]
    assert ascending[0] == "sweep/rnn-s1" and ascending[-1] == "lstm-killed"
    assert [row["seconds"] for row in runs_table.sort_rows(rows, "seconds")][:2] == [7.0, 10.0]
    with pytest.raises(SeqclfError, match="not a column"):
        runs_table.column_of("accuracy", "--sort")


def test_cli_runs_json_csv_table_and_errors(sweep: Path) -> None:
    listed = runner.invoke(app, ["runs", str(sweep), "--json", "--sort", "test_accuracy"])
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.stdout)
    assert [row["name"] for row in rows][0] == "lstm-2x64-bi" and len(rows) == 7
    assert all(set(row) == set(runs_table.FIELDS) for row in rows)
    table = list(csv.DictReader(io.StringIO(runner.invoke(app, ["runs", str(sweep), "--csv"]).stdout)))
    assert len(table) == 7 and list(table[0]) == list(runs_table.FIELDS)
    values = {row["name"]: row["test_accuracy"] for row in table}
    assert float(values["sweep/gru-s2"]) == 0.85 and values["lstm-killed"] == ""  # None: an empty field
    grouped = runner.invoke(app, ["runs", str(sweep / "sweep"), "--group-by", "model.cell,model.num_layers"])
    assert grouped.exit_code == 0, grouped.output
    assert "0.8500 ± 0.0500" in grouped.stdout and "\x1b" not in grouped.stdout  # mean ± std, plain
    human = runner.invoke(app, ["runs", str(sweep)])
    assert "sweep/gru-s0" in human.stdout and "interrupted" in human.stdout  # not cut to 80 columns
    for args, fragment in [([str(sweep / "nope")], "no such folder"), ([str(sweep), "--sort", "acc"], "not a column"),
                           ([str(sweep), "--group-by", "model.cel"], "did you mean `model.cell`"),
                           ([str(sweep), "--json", "--csv"], "one of --json, --csv and --quiet")]:
        failed = runner.invoke(app, ["runs", *args])
        assert failed.exit_code == 2 and fragment in failed.stderr, failed.output


def test_config_diff_lists_the_keys_that_differ(sweep: Path) -> None:
    a, b = sweep / "sweep" / "gru-s0", sweep / "lstm-2x64-bi"
    config = lambda path: load_config(runs.run_config_path(path))  # noqa: E731
    assert config_diff(config(a), config(b)) == {"model.cell": ["gru", "lstm"], "model.hidden_size": [128, 64],
                                 "model.num_layers": [1, 2], "model.bidirectional": [False, True]}
    assert config_diff(config(a), config(a)) == {}
    shown = runner.invoke(app, ["config", "diff", str(a), str(sweep / "sweep" / "gru-s2"), "--json"])
    assert json.loads(shown.stdout) == {"seed": [0, 2]}
    assert runner.invoke(app, ["config", "diff", str(a), str(sweep / "sweep")]).exit_code == 2  # not a run


def test_config_show_composes_sets_and_resolves_auto() -> None:
    shown = runner.invoke(app, ["config", "show", "--config", str(ROOT / "configs/lstm.yaml"),
                                "--set", "model.cell=gru", "--set", "train.epochs=2", "--set", "model.cell=rnn"])
    assert shown.exit_code == 0, shown.output
    resolved = yaml.safe_load(shown.stdout)
    assert resolved["model"]["cell"] == "rnn" and resolved["train"]["epochs"] == 2  # later --set wins
    assert resolved["train"]["lr"] == 2e-3 and resolved["output"]["name"] is None  # file, then defaults
    auto = runner.invoke(app, ["config", "show", "--set", "model.cell=gru", "--set", "model.hidden_size=auto",
                               "--set", "model.param_budget=20000"])
    model = ModelConfig(**yaml.safe_load(auto.stdout)["model"])
    assert isinstance(model.hidden_size, int) and model.param_budget == 20000
    larger = dataclasses.replace(model, hidden_size=model.hidden_size + 1)
    assert parameter_count(model, 28) <= 20000 < parameter_count(larger, 28)  # the largest that fits


def test_config_validate_exits_0_or_2(tmp_path: Path) -> None:
    shipped = [str(shipped_configs.path_of(name)) for name in shipped_configs.names()]
    ok = runner.invoke(app, ["config", "validate", *shipped])
    assert ok.exit_code == 0 and ok.stdout.count(": ok") == len(shipped)
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  cel: gru\ntrain:\n  lr: fast\n")
    failed = runner.invoke(app, ["config", "validate", shipped[0], str(bad)])
    assert failed.exit_code == 2
    assert str(bad) in failed.stderr and "model.cel" in failed.stderr and "train.lr" in failed.stderr
    assert "1 of 2 config files are invalid" in failed.stderr


def test_hidden_size_auto_picks_the_largest_fit_and_records_it(tiny_overrides: list[str]) -> None:
    budget = 6000
    cfg = load_config(ROOT / "configs/gru.yaml", [*tiny_overrides, "model.hidden_size=auto",
                                                  f"model.param_budget={budget}"])
    summary = train(cfg)
    saved = yaml.safe_load((Path(summary["run_dir"]) / runs.CONFIG).read_text())["model"]
    hidden = saved["hidden_size"]
    assert isinstance(hidden, int) and saved["param_budget"] == budget
    fitted = load_config(None, ["model.cell=gru", f"model.hidden_size={hidden}"]).model
    larger = load_config(None, ["model.cell=gru", f"model.hidden_size={hidden + 1}"]).model
    assert summary["parameters"] == parameter_count(fitted, 28) <= budget < parameter_count(larger, 28)
    assert f"gru-1x{hidden}-" in summary["run_dir"]  # the name carries the chosen size
    assert evaluate_checkpoint(summary["checkpoint"])["accuracy"] == summary["test_accuracy"]  # config reloads
    over = load_config(None, ["model.hidden_size=128", "model.param_budget=1000"])
    with pytest.raises(SeqclfError, match="over the budget"):
        resolve_hidden_size(over, 28)


def test_gradient_norm_and_clipped_fraction_per_epoch(tiny_overrides: list[str]) -> None:
    base = [*tiny_overrides, "train.epochs=1"]
    clipped = train(load_config(ROOT / "configs/rnn.yaml", [*base, "train.grad_clip=1e-6"]))
    free = train(load_config(ROOT / "configs/rnn.yaml", [*base, "train.grad_clip=0"]))
    row_clipped = runs.RunDir(Path(clipped["run_dir"])).read_metrics()[0]
    row_free = runs.RunDir(Path(free["run_dir"])).read_metrics()[0]
    assert row_clipped["clipped_fraction"] == 1.0 and row_free["clipped_fraction"] == 0.0
    # Measured before clipping: after it, every norm of the first run would be at most 1e-6.
    assert row_clipped["grad_norm"] > 1e-3 and row_free["grad_norm"] > 1e-3


def test_same_second_starts_in_threads_get_distinct_dirs(tmp_path: Path) -> None:
    cfg = load_config(None, [f"output.dir={tmp_path}"])
    made: list[Path] = []
    barrier = threading.Barrier(8)

    def start() -> None:
        barrier.wait()
        made.append(runs.RunDir.create(cfg).path)

    threads = [threading.Thread(target=start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(made)) == 8 and all(path.is_dir() for path in made)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in made)


def test_parallel_trainings_get_distinct_run_dirs(tiny_overrides: list[str], tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A training in a thread and the CLI in this one train the same config at once, both naming their run
    the same way (the other's name, taken: a collision every time). A thread trains as another process would
    (GracefulStop installs no handlers outside the main thread); the run directory is made by os.mkdir,
    which is atomic across threads and processes alike."""
    overrides = [*tiny_overrides, "train.epochs=1", "model.hidden_size=8"]
    other: dict[str, object] = {}

    def train_beside() -> None:
        try:
            other["summary"] = train(load_config(ROOT / "configs/rnn.yaml", overrides), out=Output(quiet=True))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            other["error"] = exc

    thread = threading.Thread(target=train_beside)
    thread.start()
    deadline = time.monotonic() + 120
    while not (tmp_path / "runs").is_dir() or not any((tmp_path / "runs").iterdir()):
        assert thread.is_alive() and time.monotonic() < deadline, other
        time.sleep(0.005)
    [taken] = [path.name for path in (tmp_path / "runs").iterdir()]
    monkeypatch.setattr(runs, "run_name", lambda cfg, now=None: taken)  # the same second, the same name
    ours = CliRunner().invoke(app, ["train", "--config", str(ROOT / "configs/rnn.yaml"), "--quiet",
                                    *set_args(overrides)])
    thread.join(timeout=120)
    assert "error" not in other and not thread.is_alive(), other
    assert ours.exit_code == 0, ours.output
    assert ours.stdout == ""  # --quiet: nothing but errors
    made = runs_table.list_runs(tmp_path / "runs")
    assert sorted(record.path.name for record in made) == [taken, f"{taken}-2"]  # the collision, resolved
    assert all(record.row["status"] == "finished" for record in made)


def listed(root: Path) -> list[str]:
    shown = runner.invoke(app, ["runs", str(root), "--json"])
    assert shown.exit_code == 0, shown.output
    return sorted(row["name"] for row in json.loads(shown.stdout))


def test_runs_rm_dry_run_then_removes_named_runs_whole(sweep: Path) -> None:
    before = listed(sweep)
    dry = runner.invoke(app, ["runs", "rm", "sweep/gru-s0", str(sweep / "lstm-killed"), "--dir", str(sweep), "-n"])
    assert dry.exit_code == 0, dry.output
    assert "would remove sweep/gru-s0 (finished)" in dry.stdout and "would remove lstm-killed" in dry.stdout
    assert listed(sweep) == before  # nothing removed
    gone = runner.invoke(app, ["runs", "rm", "sweep/gru-s0", str(sweep / "lstm-killed"), "--dir", str(sweep)])
    assert gone.exit_code == 0 and "removed sweep/gru-s0" in gone.stdout, gone.output
    assert listed(sweep) == sorted(set(before) - {"sweep/gru-s0", "lstm-killed"})
    assert sorted(path.name for path in (sweep / "sweep").iterdir()) == ["gru-s1", "gru-s2", "logs", "rnn-s0", "rnn-s1"]
    by_status = runner.invoke(app, ["runs", str(sweep), "rm", "--status", "interrupted,finished", "--json",
                                    "--dry-run"])  # DIR before rm, as `seqclf runs DIR rm --help` shows it
    assert json.loads(by_status.stdout) == {"removed": listed(sweep), "dry_run": True}, by_status.output


@pytest.mark.parametrize(("args", "fragment"), [
    (["sweep/gru-s1", "sweep/gru-s9"], "sweep/gru-s9: not a run under"),
    (["sweep/gru-s1", "sweep/gru-s9"], "did you mean `sweep/gru-s"),
    (["sweep/gru-s1", "sweep"], "sweep: not a run under"),  # a folder of runs is not one run
    (["--status", "finishd"], "did you mean `finished`"),
    ([], "give the runs to remove")])
def test_runs_rm_of_an_unknown_run_exits_2_and_removes_nothing(sweep: Path, args: list[str], fragment: str) -> None:
    before = listed(sweep)
    failed = runner.invoke(app, ["runs", "rm", *args, "--dir", str(sweep)])
    assert failed.exit_code == 2 and fragment in failed.stderr and "Traceback" not in failed.output, failed.output
    assert listed(sweep) == before


@pytest.mark.skipif(runlock.fcntl is None, reason="no fcntl (Windows): runs are not locked")
@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]])
def test_runs_rm_refuses_a_run_being_trained(sweep: Path, dry_run: list[str]) -> None:
    live = sweep / "sweep" / "gru-s2"
    (live / runlock.LOCK).write_text("4242\n")
    trainer = os.open(live / runlock.LOCK, os.O_RDWR)  # another open file: held as by another process
    try:
        runlock.fcntl.flock(trainer, runlock.fcntl.LOCK_EX | runlock.fcntl.LOCK_NB)
        failed = runner.invoke(app, ["runs", "rm", "sweep/gru-s1", "sweep/gru-s2", "--dir", str(sweep), *dry_run])
        assert failed.exit_code == 2 and "process 4242 is training in it" in failed.stderr, failed.output
        assert "nothing was removed" in failed.stderr and (sweep / "sweep" / "gru-s1" / runs.CONFIG).is_file()
    finally:
        os.close(trainer)
    assert runner.invoke(app, ["runs", "rm", "sweep/gru-s2", "--dir", str(sweep)]).exit_code == 0  # ended: removable


def test_runs_rm_that_cannot_delete_every_file_leaves_no_half_run(sweep: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The run is renamed to a hidden folder before its files are deleted: what is left is never listed."""
    monkeypatch.setattr(removal.shutil, "rmtree", lambda path, ignore_errors=False: (path / runs.SUMMARY).unlink())
    partly = runner.invoke(app, ["runs", "rm", "lstm-2x64-bi", "--dir", str(sweep)])
    assert partly.exit_code == 0 and "could not be deleted" in partly.stderr, partly.output
    assert "lstm-2x64-bi" not in listed(sweep) and len(listed(sweep)) == 6
    [left] = [path for path in sweep.iterdir() if path.name.startswith(".lstm-2x64-bi")]
    assert (left / runs.CONFIG).is_file()  # a whole run directory, hidden: not listed
    assert runner.invoke(app, ["runs", str(sweep)]).exit_code == 0
