"""Fixtures and hooks; the helpers they and the tests share live in helpers.py (`from helpers import ...`)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import yaml
from helpers import FASHION, FILES, SPACE, make_dataset, tiny_args, train_tiny

# Bytecode caching on for the suite, where the environment turned it off (PYTHONDONTWRITEBYTECODE, as on some CI
# images): the suite starts dozens of seqclf processes and two workers that each import every test module, and
# without a cache each of them compiles seqclf and rewrites the tests' asserts again (about 10 s of a run).
# The __pycache__ folders it writes are ignored by git.
sys.dont_write_bytecode = False
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

# torch is imported where it is used: the process that starts the pytest-xdist workers imports this file
# too, and the workers start about a second and a half sooner when it does not import torch


def _build_each_app_once() -> None:
    """typer's CliRunner turns the Typer app into click's command tree on every invoke (about 6 ms for
    seqclf's, some 700 invokes a run); the tree is the same each time, so each app is built once."""
    import typer.testing

    build, built = typer.testing._get_command, {}

    def build_once(app: object) -> object:
        if id(app) not in built:
            built[id(app)] = (app, build(app))  # the app kept too: its id is not reused while cached
        return built[id(app)][1]

    typer.testing._get_command = build_once


_build_each_app_once()


@pytest.hookimpl(trylast=True)
def pytest_unconfigure() -> None:
    """The last thing each worker does: the interpreter's teardown then skips the objects of torch, optuna,
    matplotlib and some 500 tests (seconds of garbage collection that the run waits for), as seqclf's own
    command line does (training.ranks.run_cli)."""
    import gc

    gc.freeze()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests that start real processes first (longest first: the 2-core machine's two workers finish
    together when the long tests are dealt out first and the many short ones fill in after), then the other
    tests of the throwaway PostgreSQL cluster: pytest-xdist deals the first tests out in one chunk a worker,
    so they run on the worker that started the cluster for the process test, and the other starts none."""
    items.sort(key=lambda item: (item.get_closest_marker("process") is None,
                                 "postgres" not in getattr(item, "fixturenames", ())))  # stable otherwise


@pytest.fixture(autouse=True)
def one_torch_thread() -> None:
    """One torch thread for every test: tiny tensors gain nothing from a second thread, and on a shared 2-core
    machine a second thread only waits at OpenMP barriers (runs set it again from train.num_threads, and
    one with train.num_threads=0, auto, leaves the machine's count)."""
    import torch

    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)


@pytest.fixture
def tiny_data(tmp_path: Path) -> Path:
    """Root of a flat, plain tiny dataset (600 train, 200 test, 28x28)."""
    return make_dataset(tmp_path / "data")


@pytest.fixture
def tiny_overrides(tiny_data: Path, tmp_path: Path) -> list[str]:
    """tiny_args for this test's own data and runs folder."""
    return tiny_args(tiny_data, tmp_path / "runs")


@pytest.fixture(scope="module")
def module_overrides(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """tiny_args shared by a module's tests: for runs trained once and read by several tests."""
    folder = tmp_path_factory.mktemp("module")
    return tiny_args(make_dataset(folder / "data"), folder / "runs")


@pytest.fixture
def fashion_root() -> Path:
    """The real Fashion-MNIST folder (apt-get install dataset-fashion-mnist); skips when absent."""
    missing = [f for f in FILES.values() if not (FASHION / f).is_file() and not (FASHION / (f + ".gz")).is_file()]
    if missing:
        pytest.skip(f"Fashion-MNIST not installed at {FASHION} (missing {', '.join(missing)})")
    return FASHION


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(best.pt of one tiny LSTM run, its data root), shared by every test that only reads them."""
    base = tmp_path_factory.mktemp("trained")
    root = make_dataset(base / "data")
    return train_tiny(root, base / "runs", "train.lr=0.01"), root


@pytest.fixture(scope="module")
def study_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny data, a base config and a space file (trials of ~0.1 s)."""
    folder = tmp_path_factory.mktemp("tune")
    data = make_dataset(folder / "data", n_train=300, n_test=100)
    config = folder / "base.yaml"
    config.write_text(yaml.safe_dump({
        "data": {"name": "idx", "root": str(data), "download": False, "val_size": 100},
        "model": {"hidden_size": 8}, "train": {"epochs": 2, "batch_size": 50, "device": "cpu", "num_threads": 1},
        "output": {"dir": str(folder / "runs")}}))
    space = folder / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    return {"folder": folder, "config": config, "space": space, "runs": folder / "runs"}
