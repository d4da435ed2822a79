"""The shipped configs: package data in the wheel, `--config NAME` anywhere, `config list` and `config cp`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import yaml
from helpers import ROOT, process
from typer.testing import CliRunner

from seqclf.cli.app import app
from seqclf.config import load_config, shipped, to_dict

runner = CliRunner()


def test_top_level_configs_are_the_package_ones() -> None:
    assert shipped.names() == ["bilstm", "fashion_fast", "fashion_tuned", "gru", "lstm", "permuted_lstm", "pixel_lstm",
                               "rnn"]
    assert (ROOT / "configs").resolve() == shipped.FOLDER  # one copy: configs/ points into the package
    for name in shipped.names():
        assert load_config(name) == load_config(ROOT / "configs" / f"{name}.yaml")


def test_config_list_and_cp(tmp_path: Path) -> None:
    listed = runner.invoke(app, ["config", "list"])
    assert listed.exit_code == 0 and all(name in listed.stdout for name in shipped.names())
    assert "A single-layer GRU" in listed.stdout
    copied = runner.invoke(app, ["config", "cp", "gru", str(tmp_path / "mine.yaml")])
    assert copied.exit_code == 0, copied.output
    assert (tmp_path / "mine.yaml").read_text() == (shipped.FOLDER / "gru.yaml").read_text()
    assert runner.invoke(app, ["config", "cp", "lstm", str(tmp_path)]).exit_code == 0  # into a folder
    assert (tmp_path / "lstm.yaml").is_file()
    for args, fragment in [(["gru", str(tmp_path / "mine.yaml")], "never overwrites"),
                           (["grue", str(tmp_path / "x.yaml")], "choose one of bilstm, fashion_fast, fashion_tuned"),
                           (["gru", str(tmp_path / "no" / "such" / "x.yaml")], "cannot be written")]:
        refused = runner.invoke(app, ["config", "cp", *args])
        assert refused.exit_code == 2 and fragment in refused.stderr, refused.output


def test_a_name_finds_a_shipped_config_only_when_no_such_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_config("lstm").model.cell == "lstm" and load_config("gru.yaml").model.cell == "gru"
    Path("gru").write_text("model:\n  cell: rnn\n")  # a file of that name wins
    assert load_config("gru").model.cell == "rnn"
    missing = runner.invoke(app, ["config", "show", "--config", "lstmm"])
    assert missing.exit_code == 2 and "seqclf config list" in missing.stderr


@process
def test_the_wheel_ships_every_module_and_config_and_runs_from_a_name_outside_the_repo(tmp_path: Path) -> None:
    source = tmp_path / "source"  # build from a copy: the build must not write into the repository
    shutil.copytree(ROOT / "seqclf", source / "seqclf", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "wheels"), str(source)],
                   check=True, capture_output=True, timeout=300)
    wheel = next((tmp_path / "wheels").glob("seqclf-*.whl"))
    shipped_files = {name for name in zipfile.ZipFile(wheel).namelist() if name.startswith("seqclf/")}
    package = ROOT / "seqclf"
    expected = {f"seqclf/{path.relative_to(package).as_posix()}" for pattern in ("**/*.py", "configs/*.yaml")
                for path in package.glob(pattern) if "__pycache__" not in path.parts}
    assert {f"seqclf/configs/{name}.yaml" for name in shipped.names()} <= expected
    assert shipped_files == expected  # every module of every subpackage and every config, nothing else
    target = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True,
                   capture_output=True, timeout=300)
    outside = tmp_path / "outside"
    outside.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), sysconfig.get_paths()["purelib"]])}
    found = subprocess.run([sys.executable, "-c", "import seqclf; print(seqclf.__file__)"], cwd=outside, env=env,
                           capture_output=True, text=True, timeout=60)
    assert Path(found.stdout.strip()).is_relative_to(target), found.stdout + found.stderr  # only TMP gives seqclf
    # the same search path: the installed seqclf finds its configs by name (torch-free commands: training
    # from a name is the same load_config, shown in-process by test_a_name_finds_a_shipped_config...)
    listed = subprocess.run([sys.executable, "-m", "seqclf", "config", "list"], cwd=outside, env=env,
                            capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0 and all(name in listed.stdout for name in shipped.names()), listed.stderr
    shown = subprocess.run([sys.executable, "-m", "seqclf", "config", "show", "--config", "gru"], cwd=outside,
                           env=env, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert yaml.safe_load(shown.stdout) == to_dict(load_config(shipped.FOLDER / "gru.yaml"))
    assert not list(outside.iterdir())  # nothing written where it ran
