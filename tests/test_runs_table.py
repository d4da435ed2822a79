"""`seqclf runs` as people read it: dataset/view/lr/seed columns, any config key, integers, 80 columns,
`-q`, damaged runs listed beside the rest; `config diff` with both sides resolved."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from helpers import ROOT, epoch, fake_run
from typer.testing import CliRunner

from seqclf.cli.app import app
from seqclf.config import load_config, to_yaml
from seqclf.store import rundir as runs
from seqclf.store.files import write_text

runner = CliRunner()
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    """Generated names (same date): mnist and fashion_mnist, gru and lstm, two learning rates, seeds."""
    root = tmp_path / "runs"
    specs = [("fashion_mnist", "gru", 0.003, 0, 0.86, 2378), ("fashion_mnist", "gru", 0.003, 1, 0.88, 2378),
             ("mnist", "gru", 0.001, 0, 0.97, 2378), ("mnist", "lstm", 0.001, 0, 0.98, 3210),
             ("fashion_mnist", "lstm", 0.01, 2, 0.84, 3210)]
    for i, (dataset, cell, lr, seed, acc, params) in enumerate(specs):
        fake_run(root, f"{cell}-1x128-s{seed}-20261123-1015{i:02d}",
                 [f"data.name={dataset}", f"model.cell={cell}", f"train.lr={lr}", f"seed={seed}"],
                 {"val_accuracy": acc, "test_accuracy": acc - 0.01, "parameters": params, "epochs": 8})
    return root


def rows_of(*args: str) -> list[dict]:
    shown = runner.invoke(app, ["runs", *args, "--json"])
    assert shown.exit_code == 0, shown.output
    return json.loads(shown.stdout)


def test_rows_carry_dataset_view_lr_and_seed_and_lead_with_validation(mixed: Path) -> None:
    rows = rows_of(str(mixed))
    assert [row["val_accuracy"] for row in rows] == [0.98, 0.97, 0.88, 0.86, 0.84]  # default: best val first
    assert rows[2]["dataset"] == "fashion_mnist" and rows[2]["sequence"] == "rows"
    assert rows[2]["lr"] == 0.003 and rows[2]["seed"] == 1
    assert list(rows[0]).index("val_accuracy") < list(rows[0]).index("test_accuracy")
    plain = runner.invoke(app, ["runs", str(mixed)]).stdout.splitlines()
    assert plain[0].split()[:4] == ["name", "dataset", "view", "cell"] and "fashion_mnist" in plain[3]


def test_sort_group_and_columns_take_any_config_key(mixed: Path) -> None:
    assert [row["lr"] for row in rows_of(str(mixed), "--sort", "lr")] == [0.001, 0.001, 0.003, 0.003, 0.01]
    assert [row["lr"] for row in rows_of(str(mixed), "--sort", "train.lr", "--reverse")][0] == 0.01
    picked = rows_of(str(mixed), "--columns", "name,train.batch_size,lr", "--sort", "train.batch_size")
    assert set(picked[0]) == {"name", "train.batch_size", "lr"} and picked[0]["train.batch_size"] == 128
    groups = {row["data.name"]: row for row in rows_of(str(mixed), "--group-by", "data.name")}
    assert groups["mnist"]["count"] == 2 and groups["fashion_mnist"]["count"] == 3
    by_cell = {row["model.cell"]: row for row in rows_of(str(mixed), "--group-by", "model.cell")}
    assert by_cell["gru"]["parameters"] == 2378 and isinstance(by_cell["gru"]["parameters"], int)  # equal: an int
    assert by_cell["gru"]["epochs"] == 8 and isinstance(by_cell["gru"]["epochs"], int)
    table = runner.invoke(app, ["runs", str(mixed), "--group-by", "data.name"]).stdout
    assert table.split()[0] == "dataset"  # not `name`, which would read as the run's name
    everything = runner.invoke(app, ["runs", str(mixed), "--group-by", "data.sequence"]).stdout
    mean = (3 * 2378 + 2 * 3210) / 5  # 2710.8: shown rounded, marked as a mean, no false precision
    assert f"~{mean:,.0f}" in everything and f"{mean:,.1f}" not in everything


def test_quiet_prints_run_names_for_shell_loops(mixed: Path) -> None:
    shown = runner.invoke(app, ["runs", str(mixed), "-q", "--sort", "val_accuracy"])
    assert shown.exit_code == 0
    assert shown.stdout.splitlines() == [row["name"] for row in rows_of(str(mixed))]
    assert all((mixed / name / "config.yaml").is_file() for name in shown.stdout.split())


def test_at_80_columns_names_stay_whole_and_model_columns_lead(mixed: Path) -> None:
    fake_run(mixed, "lstm-2x64-bi-s0-20261123-101599", ["model.cell=lstm", "model.num_layers=2",
             "model.hidden_size=64", "model.bidirectional=true"], {"val_accuracy": 0.9, "epochs": 8})
    shown = runner.invoke(app, ["runs", str(mixed)], env={"FORCE_COLOR": "1", "COLUMNS": "80", "CI": ""})
    lines = ANSI.sub("", shown.stdout).splitlines()
    assert all(len(line) <= 80 for line in lines), lines
    names = [row["name"] for row in rows_of(str(mixed))]
    for line, name in zip(lines[1:], names):  # each name whole, at the start of its own line: copyable
        assert line.split()[0] == name, (line, name)
    assert lines[0].split()[:5] == ["name", "cell", "layers", "hidden", "bi"], lines[0]
    assert "val acc" in lines[0] and "view" not in lines[0] and "epochs" not in lines[0]
    below = " ".join(lines[len(names) + 1:])  # columns equal in every row: said once, under the table
    assert "same in every run: view rows, epochs 8, time 10.0s, status finished" in below, lines


def test_a_name_wider_than_the_terminal_is_never_cut(mixed: Path) -> None:
    long = "an-experiment-with-a-name-longer-than-this-terminal-is-wide-20261123-101500"
    fake_run(mixed, long, ["model.cell=rnn"], {"val_accuracy": 0.5})
    shown = runner.invoke(app, ["runs", str(mixed)], env={"FORCE_COLOR": "1", "COLUMNS": "60", "CI": ""})
    lines = ANSI.sub("", shown.stdout).splitlines()
    assert shown.exit_code == 0 and lines[0].split() == ["name", "val", "acc"], lines  # no column squeezed away
    assert [line.split() for line in lines if long in line] == [[long, "0.5000"]], lines  # the line runs past 60


def test_columns_and_sort_take_the_printed_headers(mixed: Path) -> None:
    picked = rows_of(str(mixed), "--columns", "name,cell,layers,hidden,bi,val acc,params", "--sort", "time")
    assert list(picked[0]) == ["name", "cell", "num_layers", "hidden_size", "bidirectional", "val_accuracy",
                               "parameters"]
    assert [row["num_layers"] for row in rows_of(str(mixed), "--sort", "layers")] == [1] * 5
    for option, wrong, meant in [("--columns", "name,bii", "bi"), ("--sort", "hiden", "hidden"),
                                 ("--columns", "val_acc", "val acc")]:
        failed = runner.invoke(app, ["runs", str(mixed), option, wrong])
        assert failed.exit_code == 2 and f"did you mean `{meant}`" in failed.stderr, failed.output


@pytest.mark.parametrize("summary", ["[]", '"x"', '{"epochs": "x", "val_accuracy": "high", "status": "finished"}',
                                     '{"epochs": 3, "val_accuracy": 0.5, "status": 7}', "{not json"])
def test_a_damaged_summary_is_marked_and_the_rest_listed(mixed: Path, summary: str) -> None:
    bad = fake_run(mixed, "broken", ["model.cell=rnn"])
    (bad / runs.SUMMARY).write_text(summary)
    rows = {row["name"]: row for row in rows_of(str(mixed), "--sort", "epochs")}
    assert len(rows) == 6 and rows["broken"]["status"] == "damaged" and rows["broken"]["cell"] == "rnn"
    assert all(row["status"] == "finished" for name, row in rows.items() if name != "broken")
    assert runner.invoke(app, ["runs", str(mixed)]).exit_code == 0


def test_metrics_with_strings_and_mixed_types_do_not_break_listing_or_sorting(mixed: Path) -> None:
    killed = fake_run(mixed, "killed", ["model.cell=rnn"], None, [epoch(1, 0.6), {**epoch(2, 0.7), "seconds": "x"}])
    write_text(killed / runs.METRICS, (killed / runs.METRICS).read_text() + json.dumps(
        {"epoch": 3, "val_accuracy": "best"}) + "\n")
    odd = fake_run(mixed, "odd", ["model.hidden_size=auto", "model.param_budget=5000"], {"epochs": 2})
    rows = {row["name"]: row for row in rows_of(str(mixed), "--sort", "hidden_size")}
    assert rows["killed"]["status"] == "damaged" and rows["killed"]["val_accuracy"] == 0.7
    assert rows[odd.name]["hidden_size"] == "auto"  # a word among sizes sorts after them, without an error
    for column in ("epochs", "seconds", "val_accuracy", "hidden_size", "status", "name"):
        assert runner.invoke(app, ["runs", str(mixed), "--sort", column]).exit_code == 0, column


def test_config_diff_resolves_both_sides_like_config_show(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "lstm-run"
    run_dir.mkdir(parents=True)
    write_text(run_dir / runs.CONFIG, to_yaml(load_config(ROOT / "configs/lstm.yaml", ["seed=3", "train.epochs=2"])))
    shown = runner.invoke(app, ["config", "diff", str(run_dir), str(ROOT / "configs/lstm.yaml"), "--json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout) == {"seed": [3, 0], "train.epochs": [2, 8]}  # no default-vs-null rows
    by_name = runner.invoke(app, ["config", "diff", str(run_dir), "lstm", "--json"])  # a shipped config by name
    assert json.loads(by_name.stdout) == {"seed": [3, 0], "train.epochs": [2, 8]}
    small = tmp_path / "small.yaml"
    small.write_text("model:\n  cell: gru\n")
    full = tmp_path / "full.yaml"
    full.write_text(to_yaml(load_config(None, ["train.lr=0.001"])))  # every key, the lr written as 0.001
    shown = runner.invoke(app, ["config", "diff", str(small), str(full), "--json"])
    assert json.loads(shown.stdout) == {"model.cell": ["gru", "lstm"]}
    auto = tmp_path / "auto.yaml"
    auto.write_text("model:\n  hidden_size: auto\n  param_budget: 50000\n")
    assert json.loads(runner.invoke(app, ["config", "diff", str(auto), str(auto), "--json"]).stdout) == {}
