"""seqclf tune: the space file's errors at the CLI, studies that prune and continue, PostgreSQL workers."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from seqclf.cli.app import app
from seqclf.config import load_config
from seqclf.search.space import load_space

optuna = pytest.importorskip("optuna", reason="seqclf tune needs the optional extra seqclf[tune]")

from helpers import (  # noqa: E402
    ROOT,
    SPACE,
    cli_json,
    posix_only,
    process,
)

from seqclf.console import Output  # noqa: E402
from seqclf.search.storage import open_storage, require_optuna  # noqa: E402
from seqclf.search.study import Settings, study_info  # noqa: E402
from seqclf.search.trials import work  # noqa: E402
from seqclf.training.signals import GracefulStop  # noqa: E402

# the space file's own checks are tests/test_space.py; the worker loop's (a killed worker, Ctrl-C) test_trials.py


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "CI": "1"}


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


class Cluster(str):
    """A PostgreSQL storage URL whose server `stop()` stops (every connection to it is cut) and `start()`
    starts again."""

    stop: Callable[[], None]
    start: Callable[[], None]


@pytest.fixture(scope="module")
def postgres() -> Iterator[Cluster]:
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
        pg_ctl = [*as_postgres, bin_dir / "pg_ctl", "-D", folder / "data", "-l", folder / "log", "-w"]
        start = [*pg_ctl, "-o", f"-p {port} -k {folder} -c listen_addresses=127.0.0.1", "start"]
        subprocess.run(start, **quiet)
        subprocess.run([*as_postgres, bin_dir / "createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                        "optuna"], **quiet)
        cluster = Cluster(f"postgresql://postgres@127.0.0.1:{port}/optuna")
        cluster.stop = lambda: subprocess.run([*pg_ctl, "-m", "fast", "stop"], **quiet)
        cluster.start = lambda: subprocess.run(start, **quiet)
        yield cluster
    finally:
        subprocess.run([*as_postgres, bin_dir / "pg_ctl", "-D", folder / "data", "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------- several objectives: a Pareto front


def test_accuracy_and_seconds_make_a_front_shown_and_drawn(study_files: dict[str, Path], tmp_path: Path) -> None:
    args = ["tune", "--config", str(study_files["config"]), "--space", str(study_files["space"]), "--study", "front",
            "--objective", "accuracy,seconds", "--sampler", "random"]
    info = cli_json(*args, "--trials", "3")  # no --pruner: none, as several objectives cannot be pruned
    assert info["objectives"] == ["accuracy", "seconds"] and info["best"] is None
    assert (info["complete"], info["pruned"], info["failed"]) == (3, 0, 0)
    assert info["front"] and {t["trial"] for t in info["front"]} <= {t["number"] for t in info["trials"]}
    for entry in info["front"]:
        summary = json.loads((Path(entry["run_dir"]) / "summary.json").read_text())
        assert entry["values"] == {"accuracy": summary["val_accuracy"], "seconds": summary["seconds"]}
        assert set(entry["params"]) == set(SPACE)
    for row in info["trials"]:  # no front trial is beaten on both objectives by another trial
        assert row["value"] is None and set(row["values"]) == {"accuracy", "seconds"}
    for entry in info["front"]:
        assert not any(row["values"]["accuracy"] > entry["values"]["accuracy"]
                       and row["values"]["seconds"] < entry["values"]["seconds"] for row in info["trials"])
    assert set(info["importances"]) == {"accuracy", "seconds"}
    where = f"output.dir={study_files['runs']}"
    shown = CliRunner().invoke(app, ["tune", "--show", "--study", "front", "--set", where])
    assert shown.exit_code == 0, shown.output
    assert "val accuracy" in shown.output and "seconds" in shown.output and "Pareto front" in shown.output
    picture = tmp_path / "front.png"
    drawn = CliRunner().invoke(app, ["plot", "--study", "front", "--set", where, "-o", str(picture)])
    assert drawn.exit_code == 0, drawn.output
    assert picture.read_bytes().startswith(b"\x89PNG")
    # the study keeps its objectives: another set is refused, naming the study's own
    changed = CliRunner().invoke(app, [*args[:-4], "--objective", "accuracy", "--trials", "4"])
    assert changed.exit_code == 2 and "optimizes accuracy,seconds" in changed.output
    assert cli_json(*args, "--trials", "4")["complete"] == 4  # the same objectives continue it


def test_pruning_several_objectives_is_refused_and_loss_is_minimized(study_files: dict[str, Path]) -> None:
    args = ["tune", "--config", str(study_files["config"]), "--space", str(study_files["space"])]
    for objective, pruner, expected in (("accuracy,parameters", "median", "cannot prune a multi-objective study"),
                                        ("seconds", "hyperband", "seconds has no value after each epoch"),
                                        ("accuracy,speed", "none", "unknown speed")):
        refused = CliRunner().invoke(app, [*args, "--study", "never", "--objective", objective, "--pruner", pruner])
        assert refused.exit_code == 2 and expected in refused.output, refused.output
        assert "Traceback" not in refused.output
    assert not (study_files["runs"] / "never").exists()
    info = cli_json(*args, "--study", "lowloss", "--objective", "loss", "--trials", "2", "--pruner", "none")
    assert info["objectives"] == ["loss"] and info["best"]["value"] == min(t["value"] for t in info["trials"])
    history = [json.loads(line) for line in (Path(info["best"]["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    assert info["best"]["value"] == min(row["val_loss"] for row in history)


@pytest.mark.parametrize("name", ["../escape", "a/b", "", ".", "x\ny"])
def test_a_study_name_that_is_not_one_folder_name_is_refused(study_files: dict[str, Path], tmp_path: Path,
                                                             name: str) -> None:
    runs = tmp_path / "out" / "runs"
    args = ["tune", "--config", str(study_files["config"]), "--space", str(study_files["space"]), "--trials", "1",
            "--study", name, "--set", f"output.dir={runs}"]
    for extra in ([], ["--jobs", "2"], ["--show"]):
        result = CliRunner().invoke(app, [*args, *extra])
        assert result.exit_code == 2, (extra, result.output)
        assert "--study" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()  # nothing written, outside output.dir or in it


def test_a_grid_smaller_than_trials_ends_when_the_grid_is_done(study_files: dict[str, Path], tmp_path: Path) -> None:
    grid = tmp_path / "grid.yaml"
    grid.write_text("model.cell: {choice: [lstm, gru]}\n")
    args = ["tune", "--config", str(study_files["config"]), "--space", str(grid), "--sampler", "grid",
            "--trials", "5", "--study", "grid", "--pruner", "none", "--set", "train.epochs=1"]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert (info["complete"], info["pruned"], info["failed"]) == (2, 0, 0)
    assert sorted(t["params"]["model.cell"] for t in info["trials"]) == ["gru", "lstm"]
    again = CliRunner().invoke(app, [*args, "--json"])  # continuing a finished grid runs nothing more
    assert again.exit_code == 0 and json.loads(again.stdout)["complete"] == 2, again.output


def test_continuing_a_study_with_a_key_of_another_kind_is_one_message(study_files: dict[str, Path],
                                                                      tmp_path: Path) -> None:
    space = tmp_path / "space.yaml"
    args = ["tune", "--config", str(study_files["config"]), "--space", str(space), "--study", "changed",
            "--pruner", "none", "--set", "train.epochs=1"]
    space.write_text("train.lr: {log_uniform: [1.0e-3, 1.0e-2]}\n")
    assert CliRunner().invoke(app, [*args, "--trials", "1"]).exit_code == 0
    space.write_text("train.lr: {choice: [0.001, 0.01]}\n")  # the same key, now categorical
    result = CliRunner().invoke(app, [*args, "--trials", "2"])
    assert result.exit_code == 2, result.output
    assert "--study changed: train.lr is now choice [0.001, 0.01], but the study's earlier trials drew it" \
        in " ".join(result.output.split())
    assert "Traceback" not in result.output


@pytest.mark.parametrize("damage", ["nul", "overwritten", "all-nul"])
def test_a_damaged_journal_is_one_message(study_files: dict[str, Path], tmp_path: Path, damage: str) -> None:
    runs = tmp_path / "runs"
    args = ["tune", "--config", str(study_files["config"]), "--space", str(study_files["space"]), "--study", "j",
            "--pruner", "none", "--set", "train.epochs=1", "--set", f"output.dir={runs}"]
    assert CliRunner().invoke(app, [*args, "--trials", "1"]).exit_code == 0
    journal = runs / "j" / "journal.log"
    data = journal.read_bytes()
    journal.write_bytes({"nul": data[:100] + bytes(50) + data[150:],
                         "overwritten": data[:200] + b"X" * 10 + data[210:],
                         "all-nul": bytes(len(data))}[damage])
    for extra in (["--trials", "2"], ["--show"]):
        result = CliRunner().invoke(app, [*args, *extra])
        assert result.exit_code == 2, result.output
        assert f"{journal}: the study's journal is damaged" in " ".join(result.output.split())
        assert "Traceback" not in result.output


def test_jobs_are_capped_by_cores_and_memory_in_one_line(capsys: pytest.CaptureFixture) -> None:
    from seqclf.config.limits import available_memory
    from seqclf.search.workers import WORKER_MEMORY, capped_jobs

    cores = len(os.sched_getaffinity(0))
    fit = min(cores, max(1, available_memory() // WORKER_MEMORY))
    assert capped_jobs(100, Output()) == fit
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and f"--jobs 100: running {fit} workers" in lines[0] and f"{cores} cores" in lines[0]
    assert capped_jobs(1, Output()) == 1 and capsys.readouterr().err == ""


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def _running(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@process
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_workers_die_with_a_parent_killed_by_sigkill(study_files: dict[str, Path], tmp_path: Path) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-m", "seqclf", "tune", "--config", str(study_files["config"]), "--space",
         str(study_files["space"]), "--study", "orphans", "--trials", "50", "--jobs", "2", "--pruner", "none",
         "--set", "train.epochs=1000", "--set", f"output.dir={tmp_path / 'runs'}", "--quiet"],
        env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while len(workers := _children(parent.pid)) < 2:
            assert parent.poll() is None and time.monotonic() < deadline, "the workers never started"
            time.sleep(0.1)
        parent.kill()  # the workers, left alone, would train 50 trials of 1000 epochs
        parent.wait()
        deadline = time.monotonic() + 60
        while any(_running(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [pid for pid in workers if _running(pid)], "workers ran on after the parent was killed"
    finally:
        parent.kill()
        for pid in _children(parent.pid) + (workers if "workers" in locals() else []):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _workers_done(study: str, storage: object) -> set[int]:
    """The workers that have completed a trial (none before the study exists); storage: one opened once, not a
    URL (each opening builds a SQLAlchemy engine and checks Optuna's tables: a tenth of a second of CPU)."""
    try:
        trials = optuna.load_study(study_name=study, storage=storage).trials
    except KeyError:
        return set()
    return {t.user_attrs["worker"] for t in trials if t.state.name == "COMPLETE"}


@process  # the first command's parent and its two workers; the rerun runs here
@posix_only
def test_two_workers_share_a_postgresql_study_an_outage_is_one_line_each_and_a_rerun_continues(
        study_files: dict[str, Path], postgres: Cluster) -> None:
    runs_dir = study_files["runs"] / "pg"
    command = ["tune", "--config", str(study_files["config"]), "--space", str(study_files["space"]), "--study",
               "pg", "--storage", postgres, "--pruner", "none"]
    first = subprocess.Popen([sys.executable, "-m", "seqclf", *command, "--jobs", "2", "--trials", "50", "--set",
                              "train.epochs=3"], env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True)
    try:
        deadline, watching = time.monotonic() + 120, open_storage(postgres, Path(), create=False)[0]
        while len(_workers_done("pg", watching)) < 2:  # both workers have trained trials of the one study
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.2)
        # the parent only starts and watches the workers: it never loads torch (seconds and hundreds of MB)
        assert "libtorch" not in Path(f"/proc/{first.pid}/maps").read_text()
        # down until both workers have met it: each stops at its next call (Optuna retries creating a trial
        # for some seconds, so a server back at once would be found again by a worker asking for one)
        postgres.stop()
        try:
            stderr = first.communicate(timeout=120)[1]
        finally:
            postgres.start()
    finally:
        first.kill()
    assert first.returncode == 1, stderr
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) <= 8, stderr
    lines = [line for line in stderr.splitlines() if "storage" in line and "failed" in line]
    assert len(lines) == 2 and "2 of 2 workers failed" in stderr, stderr
    assert "Run the same command again" in " ".join(stderr.split()), stderr

    trials = optuna.load_study(study_name="pg", storage=postgres).trials
    # an outage between ask() and the worker naming itself leaves a trial running for UNCLAIMED_AFTER seconds
    unclaimed = {t.number for t in trials if t.state.name == "RUNNING" and "worker" not in t.user_attrs}
    done = len([t for t in trials if t.state.name == "COMPLETE"])
    info = cli_json(*command, "--trials", str(done + len(unclaimed) + 1), "--set", "train.epochs=1")  # here
    assert info["storage"] == postgres and info["complete"] == done + 1
    running = {t["number"] for t in info["trials"] if t["state"] == "running"}
    assert running == unclaimed  # the rerun failed the dead workers' trials
    # no trial lost or counted twice: each number once, each complete trial one run directory saying so; a
    # finished run no complete trial claims is one whose trial the outage failed (its result never told)
    assert sorted(t["number"] for t in info["trials"]) == list(range(len(info["trials"])))
    claimed = {Path(t["run_dir"]): t["number"] for t in info["trials"] if t["state"] == "complete"}
    failed = {Path(t["run_dir"]) for t in info["trials"] if t["state"] == "fail" and t.get("run_dir")}
    finished = {path.parent for path in runs_dir.glob("*/summary.json")
                if json.loads(path.read_text())["status"] == "finished"}
    assert set(claimed) <= finished and finished - set(claimed) <= failed
    for run_dir, number in claimed.items():
        summary = json.loads((run_dir / "summary.json").read_text())
        assert (summary["study"], summary["trial"]) == ("pg", number)


def test_several_commands_opening_a_fresh_postgresql_database_at_once_all_succeed(postgres: Cluster) -> None:
    """Optuna creates its tables on first use; two creators at once collide in PostgreSQL's catalogue
    (UniqueViolation on pg_type). Workers started together on several machines, or a watcher, do this."""
    import psycopg

    base = postgres.rsplit("/", 1)[0]
    with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
        admin.execute("CREATE DATABASE fresh_race")
    url = f"{base}/fresh_race"
    start = threading.Barrier(6)
    errors: list[BaseException] = []

    def opener() -> None:
        start.wait()
        try:
            open_storage(url, Path("unused"), create=True)
        except BaseException as exc:  # noqa: B036 - the thread reports every failure
            errors.append(exc)

    threads = [threading.Thread(target=opener) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors


def test_a_lost_database_connection_is_not_also_logged_with_its_sql(postgres: Cluster) -> None:
    """Optuna logs some storage errors with their SQL before raising them (a restart while it reads the
    running trials); seqclf's one line (storage_failure) is what says it."""
    import psycopg
    from sqlalchemy import event

    require_optuna()
    storage = open_storage(postgres, Path(), create=True)[0]
    study = optuna.create_study(study_name="cut", storage=storage, load_if_exists=True)
    study.ask(), study.ask()
    study.get_trials()  # cached; the running ones are read again by id: trial_id IN (...)

    def cut(conn: Any, cursor: Any, statement: str, *args: Any) -> None:  # the server goes down mid-session
        if " IN (" in statement and not cut.done:
            cut.done = True
            with psycopg.connect(postgres, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE datname = 'optuna' AND pid <> pg_backend_pid()")

    cut.done = False
    event.listen(storage.engine, "before_cursor_execute", cut)
    logged: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = logged.append
    logging.getLogger("optuna").addHandler(handler)  # Optuna's loggers do not propagate to the root
    try:
        with pytest.raises(optuna.exceptions.StorageInternalError):
            study.get_trials()
    finally:
        logging.getLogger("optuna").removeHandler(handler)
    assert cut.done and not [record.getMessage()[:200] for record in logged]


# ---------------------------------------------------------------- what a person reads


@pytest.fixture(scope="module")
def one_layer_study(study_files: dict[str, Path]) -> tuple[list[str], str]:
    """(the tune command of a 3-trial study whose every trial has dropout and one layer, its output)."""
    space = study_files["folder"] / "dropout.yaml"
    space.write_text("train.lr: {log_uniform: [1.0e-3, 1.0e-2]}\nmodel.dropout: {uniform: [0.1, 0.3]}\n"
                     "model.bidirectional: {choice: [false, true]}\n")
    args = ["tune", "--config", str(study_files["config"]), "--space", str(space), "--study", "onelayer",
            "--sampler", "random", "--trials", "3"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return args, result.output


def test_dropout_with_one_layer_is_said_once_at_the_start_and_rounded(one_layer_study: tuple[list[str], str]) -> None:
    output = one_layer_study[1]
    assert output.count("no effect") == 1, output
    assert output.index("no effect") < output.index("trial 0")
    warning = next(line for line in output.splitlines() if "no effect" in line)
    assert not re.search(r"\d\.\d{4,}", warning), warning  # 0.3, not 0.2631288096906184


def test_parameters_print_as_yaml_and_importances_say_they_are_rough(one_layer_study: tuple[list[str], str],
                                                                      study_files: dict[str, Path]) -> None:
    output = one_layer_study[1]
    shown = CliRunner().invoke(app, ["tune", "--show", "--study", "onelayer", "--set",
                                     f"output.dir={study_files['runs']}"]).output
    for text in (output, shown):
        assert "model.bidirectional=true" in text or "model.bidirectional=false" in text, text
        assert "True" not in text and "False" not in text, text
        importances = next(line for line in text.splitlines() if line.startswith("importances"))
        assert "(rough: only 3 complete trials" in importances, importances


@pytest.mark.parametrize("columns", [None, "100"])
def test_show_fits_the_width_when_piped_and_cuts_no_value(one_layer_study: tuple[list[str], str],
                                                          study_files: dict[str, Path], columns: str | None) -> None:
    args = ["tune", "--show", "--study", "onelayer", "--set", f"output.dir={study_files['runs']}"]
    shown = CliRunner().invoke(app, args, env={"COLUMNS": columns})
    assert shown.exit_code == 0, shown.output
    width = int(columns or 80)
    assert max(map(len, shown.output.splitlines())) <= width, shown.output
    info = cli_json(*args)
    words = shown.output.split()
    for trial in info["trials"]:  # every run and every parameter whole; the runs named in their folder
        assert Path(trial["run_dir"]).name in words and f"{Path(trial['run_dir']).parent}/" in words
        for key, value in trial["params"].items():
            text = str(value).lower() if isinstance(value, bool) else f"{value:.4g}" if isinstance(value, float) \
                else str(value)
            assert f"{key}={text}" in words, (key, shown.output)
    wide = CliRunner().invoke(app, [*args, "--json"], env={"COLUMNS": "40"})
    assert json.loads(wide.stdout) == info  # --json keeps its one object whatever the width
