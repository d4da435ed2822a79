"""The one set-up path (seqclf/training/prepare.py): device, threads, data, hidden_size auto, fitting a checkpoint."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from helpers import make_dataset, tiny_args

from seqclf.config import load_config
from seqclf.data.idx import DataError
from seqclf.model.classifier import parameter_count
from seqclf.store.checkpoint import DataMeta
from seqclf.store.rundir import RunDir
from seqclf.training.prepare import check_data_fits, check_same_data, prepare


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("prepare")
    return {"data": make_dataset(folder / "data", n_train=300, n_test=100),
            "other": make_dataset(folder / "other", n_train=300, n_test=100, seed=1),  # same shapes, other pixels
            "small": make_dataset(folder / "small", n_train=300, n_test=100, size=14),
            "runs": folder / "runs"}


def test_prepare_resolves_the_device_threads_data_and_hidden_size_auto(roots: dict[str, Path]) -> None:
    cfg = load_config(None, [*tiny_args(roots["data"], roots["runs"]), "model.cell=gru", "model.hidden_size=auto",
                             "model.param_budget=5000"])
    ready = prepare(cfg)
    assert ready.device == torch.device("cpu") and ready.threads == 1 == torch.get_num_threads()
    assert (len(ready.data.train), len(ready.data.val), len(ready.data.test)) == (200, 100, 100)
    hidden = ready.cfg.model.hidden_size  # the largest that fits the budget, for the data's (T, F) = (28, 28)
    assert isinstance(hidden, int) and parameter_count(ready.cfg.model, 28) <= 5000
    assert parameter_count(dataclasses.replace(ready.cfg.model, hidden_size=hidden + 1), 28) > 5000
    only_test = prepare(cfg, splits=("test",))
    assert len(only_test.data.test) == 100 and only_test.data.train is None


def test_with_a_checkpoints_meta_the_data_is_normalized_as_it_was_and_must_fit(roots: dict[str, Path]) -> None:
    cfg = load_config(None, tiny_args(roots["data"], roots["runs"]))
    trained = DataMeta.of(prepare(cfg).data)
    other = load_config(None, tiny_args(roots["other"], roots["runs"]))
    ready = prepare(other, splits=("test",), meta=dataclasses.replace(trained, mean=0.5, std=0.25), source="best.pt")
    pixels = ready.data.test.x * 0.25 + 0.5  # back to pixel / 255 with the checkpoint's statistics
    assert float(pixels.min()) >= -1e-6 and float(pixels.max()) <= 1 + 1e-6
    small = load_config(None, tiny_args(roots["small"], roots["runs"]))
    with pytest.raises(DataError, match="does not fit best.pt, trained on 28 steps of 28 features") as refused:
        prepare(small, splits=("test",), meta=trained, source="best.pt")
    assert "(14 steps of 14 features, 10 classes)" in str(refused.value)
    with pytest.raises(DataError, match="10 classes"):
        check_data_fits(prepare(cfg, splits=("test",)).data, dataclasses.replace(trained, num_classes=9),
                        str(roots["data"]), "best.pt")


def test_a_resume_must_continue_on_the_same_data(roots: dict[str, Path]) -> None:
    trained = DataMeta.of(prepare(load_config(None, tiny_args(roots["data"], roots["runs"]))).data)
    same = prepare(load_config(None, tiny_args(roots["data"], roots["runs"]))).data
    check_same_data(same, trained, str(roots["data"]), RunDir(roots["runs"] / "r"))  # the same files: no error
    other = prepare(load_config(None, tiny_args(roots["other"], roots["runs"]))).data
    with pytest.raises(DataError, match="is not the data") as refused:
        check_same_data(other, trained, str(roots["other"]), RunDir(roots["runs"] / "r"))
    assert f"seqclf eval {roots['runs'] / 'r' / 'best.pt'} --set data.root={roots['other']}" in str(refused.value)
    assert trained.fingerprint["digest"][:12] in str(refused.value)
    old = dataclasses.replace(trained, fingerprint=None)  # a checkpoint from before fingerprints
    check_same_data(other, old, str(roots["other"]), RunDir(roots["runs"] / "r"))
