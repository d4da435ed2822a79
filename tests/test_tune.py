"""seqclf tune: the space file's errors at the CLI, studies that prune and continue, PostgreSQL workers."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from seqclf.cli.app import app
from seqclf.config import load_config
from seqclf.search.space import load_space

optuna = pytest.importorskip("optuna", reason="seqclf tune needs the optional extra seqclf[tune]")

from helpers import (  # noqa: E402
    SPACE,
    cli_json,
    posix_only,
    process,
    run_script,
)

from seqclf.console import Output  # noqa: E402
from seqclf.search.study import Settings, study_info  # noqa: E402
from seqclf.search.trials import work  # noqa: E402
from seqclf.training.signals import GracefulStop  # noqa: E402

# the space file's own checks are tests/test_space.py; the worker loop's (a killed worker, Ctrl-C) test_trials.py


# ---------------------------------------------------------------- the space file


def test_space_errors_exit_2_before_any_trial(study_files: dict[str, Path], tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("train.lrr: {log_uniform: [1.0e-4, 1.0e-2]}\nmodel.cell: {uniform: [0, 1]}\n")
    result = CliRunner().invoke(app, ["tune", "--config", str(study_files["config"]), "--space", str(bad),
                                      "--study", "never"])
    assert result.exit_code == 2
    assert "did you mean `train.lr`" in result.output and "model.cell: a str key takes {choice" in result.output
    assert "Traceback" not in result.output
    assert not (study_files["runs"] / "never").exists()


def test_without_optuna_the_install_command(study_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "optuna", None)  # what `import optuna` meets where it is not installed
    result = CliRunner().invoke(app, ["tune", "--config", str(study_files["config"]), "--space",
                                      str(study_files["space"])])
    assert result.exit_code == 2 and 'pip install "seqclf[tune]"' in result.output


# ---------------------------------------------------------------- studies


class EveryOther(optuna.pruners.BasePruner):
    """Prunes odd-numbered trials after their first epoch: a pruner that must prune."""

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        return trial.number % 2 == 1


def test_study_runs_prunes_and_continues(study_files: dict[str, Path]) -> None:
    base = load_config(study_files["config"])
    settings = Settings(base, load_space(study_files["space"], base), study="grow", trials=3)
    work(settings, Output(quiet=True), GracefulStop(), pruner=EveryOther())
    info = study_info("grow", None, base)
    assert (info["complete"], info["pruned"], info["failed"]) == (2, 1, 0)
    pruned = json.loads((study_files["runs"] / "grow/trial-0001/summary.json").read_text())
    assert pruned["status"] == "pruned" and pruned["epochs"] == 1 and (pruned["study"], pruned["trial"]) == ("grow", 1)
    # the same command again, asking for 5: exactly two more trials
    again = cli_json("tune", "--config", str(study_files["config"]), "--space", str(study_files["space"]),
                     "--study", "grow", "--trials", "5", "--pruner", "none")
    assert (again["complete"], again["pruned"], again["failed"]) == (4, 1, 0)
    assert [t["number"] for t in again["trials"]] == [0, 1, 2, 3, 4]
    best = again["best"]
    assert best["value"] == max(t["value"] for t in again["trials"] if t["state"] == "complete")
    summary = json.loads((Path(best["run_dir"]) / "summary.json").read_text())
    assert summary["val_accuracy"] == best["value"] and summary["trial"] == best["trial"]
    assert set(again["importances"]) == set(SPACE)
    shown = cli_json("tune", "--show", "--study", "grow", "--set", f"output.dir={study_files['runs']}")
    assert shown == again
    listed = cli_json("runs", str(study_files["runs"] / "grow"))
    assert sorted((row["name"], row["status"]) for row in listed) == [
        ("trial-0000", "finished"), ("trial-0001", "pruned"), ("trial-0002", "finished"),
        ("trial-0003", "finished"), ("trial-0004", "finished")]


def test_sqlite_storage_show_plot_and_unknown_study(study_files: dict[str, Path], tmp_path: Path) -> None:
    base = load_config(study_files["config"])
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    work(Settings(base, load_space(study_files["space"], base), study="pic", storage=url, trials=2, pruner="none"),
         Output(quiet=True), GracefulStop())
    assert cli_json("tune", "--show", "--study", "pic", "--storage", url)["complete"] == 2
    picture = tmp_path / "study.png"
    result = CliRunner().invoke(app, ["plot", "--study", "pic", "--storage", url, "-o", str(picture)])
    assert result.exit_code == 0, result.output
    assert picture.read_bytes().startswith(b"\x89PNG")
    result = CliRunner().invoke(app, ["tune", "--show", "--study", "nope", "--set",
                                      f"output.dir={study_files['runs']}"])
    assert result.exit_code == 2 and "no study at" in result.output
    result = CliRunner().invoke(app, ["tune", "--show", "--study", "nope", "--storage", url])
    assert result.exit_code == 2 and "no such study" in result.output and "it holds pic" in result.output


# ---------------------------------------------------------------- several workers, one PostgreSQL study

# Debian's server binaries, newest version first (15 on bookworm); .ci/run installs the package
PG_BINS = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: (len(p.parts[-3]), p.parts[-3]),
                 reverse=True)


@pytest.fixture(scope="module")
def postgres() -> str:
    """A throwaway PostgreSQL 15 cluster on a free loopback port, stopped and deleted after the module."""
    if not PG_BINS:
        pytest.skip("no PostgreSQL server binaries in /usr/lib/postgresql/*/bin (Debian's postgresql package; "
                    ".ci/run installs it)")
    bin_dir = PG_BINS[0].parent
    pytest.importorskip("psycopg", reason='the PostgreSQL driver SQLAlchemy uses for postgresql://: '
                                         'pip install "psycopg[binary]"')
    folder = Path(tempfile.mkdtemp(prefix="seqclf-pg-"))  # under /tmp: the postgres user can reach it
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []  # initdb refuses root
    if as_postgres:
        shutil.chown(folder, "postgres")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    quiet = {"check": True, "capture_output": True, "timeout": 120}
    try:
        subprocess.run([*as_postgres, bin_dir / "initdb", "-D", folder / "data", "-U", "postgres", "--auth=trust"],
                       **quiet)
        subprocess.run([*as_postgres, bin_dir / "pg_ctl", "-D", folder / "data", "-l", folder / "log", "-w", "-o",
                        f"-p {port} -k {folder} -c listen_addresses=127.0.0.1", "start"], **quiet)
        subprocess.run([*as_postgres, bin_dir / "createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                        "optuna"], **quiet)
        yield f"postgresql://postgres@127.0.0.1:{port}/optuna"
    finally:
        subprocess.run([*as_postgres, bin_dir / "pg_ctl", "-D", folder / "data", "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)


@process  # the two workers; the command that starts them runs in this process (run_script: a real stdout)
@posix_only
def test_two_workers_share_a_postgresql_study(study_files: dict[str, Path], postgres: str) -> None:
    command = ["seqclf", "tune", "--config", str(study_files["config"]), "--space",
               str(study_files["space"]), "--study", "pg", "--storage", postgres, "--trials", "4", "--jobs", "2",
               "--pruner", "none", "--json", "--set", "train.epochs=8"]  # trials outlast a worker's start-up
    done = run_script(command, timeout=300)
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["storage"] == postgres and info["complete"] == 4
    study = optuna.load_study(study_name="pg", storage=postgres)
    workers = {t.user_attrs["worker"] for t in study.trials if t.state.name == "COMPLETE"}
    assert len(workers) == 2  # both processes ran trials
    # no trial lost or counted twice: each number once, each complete trial one run directory saying so,
    # and no run directory that no trial claims (a surplus trial, if any, never trained)
    assert sorted(t["number"] for t in info["trials"]) == list(range(len(info["trials"])))
    claimed = {t["run_dir"]: t["number"] for t in info["trials"] if t["state"] == "complete"}
    on_disk = sorted(path.parent for path in (study_files["runs"] / "pg").glob("*/summary.json"))
    assert sorted(map(Path, claimed)) == on_disk
    for run_dir, number in claimed.items():
        summary = json.loads((Path(run_dir) / "summary.json").read_text())
        assert (summary["study"], summary["trial"], summary["status"]) == ("pg", number, "finished")
