"""The sequence views end to end: exact step order from IDX files, the stored permutation, and
`seqclf eval` reproducing train's test score for every view."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import FILES, ROOT, cli_json, set_args, write_idx

from seqclf.config import DataConfig, load_config
from seqclf.data.datasets import load_data
from seqclf.data.views import SEQUENCES, permutation
from seqclf.store import checkpoint

SIDE = 28

# Two hand-made images that name every pixel: ROW_IMAGE holds the pixel's row, COLUMN_IMAGE its column.
ROW_IMAGE = np.repeat(np.arange(SIDE, dtype=np.uint8)[:, None], SIDE, axis=1)  # (28, 28): [r, c] = r
COLUMN_IMAGE = ROW_IMAGE.T.copy()  # [r, c] = c


def expected_steps(image: np.ndarray, sequence: str, perm: list[int]) -> list[list[int]]:
    """What the model must read at each step, written out pixel by pixel (no reshapes)."""
    if sequence == "rows":
        return [[int(image[t, f]) for f in range(SIDE)] for t in range(SIDE)]
    if sequence == "columns":
        return [[int(image[f, t]) for f in range(SIDE)] for t in range(SIDE)]
    order = range(SIDE * SIDE) if sequence == "pixels" else perm
    return [[int(image[p // SIDE, p % SIDE])] for p in order]


@pytest.mark.parametrize("sequence", SEQUENCES)
def test_views_read_idx_images_in_the_exact_order(tmp_path: Path, sequence: str) -> None:
    write_idx(tmp_path / FILES["train_images"], np.zeros((4, SIDE, SIDE), dtype=np.uint8))
    write_idx(tmp_path / FILES["train_labels"], np.zeros(4, dtype=np.uint8))
    write_idx(tmp_path / (FILES["test_images"] + ".gz"), np.stack([ROW_IMAGE, COLUMN_IMAGE]))
    write_idx(tmp_path / FILES["test_labels"], np.array([3, 7], dtype=np.uint8))
    cfg = DataConfig(name="idx", root=str(tmp_path), val_size=1, normalize=False, sequence=sequence,
                     permutation_seed=5)
    data = load_data(cfg, seed=0, splits=("test",))
    steps = SIDE * SIDE if "pixels" in sequence else SIDE
    features = 1 if "pixels" in sequence else SIDE
    assert data.test.x.shape == (2, steps, features) and (data.seq_len, data.input_size) == (steps, features)
    perm = permutation(SIDE * SIDE, 5).tolist()
    pixels = (data.test.x * 255).round().long()  # back to the bytes of the file
    for index, image in enumerate((ROW_IMAGE, COLUMN_IMAGE)):
        assert pixels[index].tolist() == expected_steps(image, sequence, perm)
    # together the two images give each step's (row, column): every pixel is read exactly once
    read = sorted(zip(pixels[0].flatten().tolist(), pixels[1].flatten().tolist()))
    assert read == [(r, c) for r in range(SIDE) for c in range(SIDE)]


def test_the_permutation_is_a_fixed_seed_determined_bijection() -> None:
    first = permutation(784, 11)
    torch.manual_seed(123)  # the global generator plays no part
    torch.rand(5)
    assert torch.equal(permutation(784, 11), first)
    assert sorted(first.tolist()) == list(range(784))
    assert not torch.equal(first, torch.arange(784))
    others = [permutation(784, seed) for seed in range(5)]
    assert len({tuple(p.tolist()) for p in others}) == 5  # each seed its own ordering


def train_view(overrides: list[str], sequence: str, *extra: str) -> dict:
    # 784-step views are 28x longer: a tiny model, one epoch and a few batches keep this at a second or so
    small = ["model.hidden_size=8", "train.epochs=1", "data.max_train=300", "data.val_size=50",
             "train.batch_size=50"] if "pixels" in sequence else []
    return cli_json("train", "--config", str(ROOT / "configs/lstm.yaml"),
                    *set_args([*overrides, *small, f"data.sequence={sequence}", "train.lr=0.005", *extra]))


@pytest.mark.parametrize("sequence", SEQUENCES)
def test_eval_reproduces_train_test_score_for_every_view(tiny_overrides: list[str], sequence: str) -> None:
    summary = train_view(tiny_overrides, sequence)
    result = cli_json("eval", summary["checkpoint"])
    assert result["n"] == 200
    assert result["accuracy"] == summary["test_accuracy"]
    assert result["loss"] == pytest.approx(summary["test_loss"], rel=1e-9)


def test_eval_uses_the_permutation_stored_in_the_checkpoint(tiny_overrides: list[str], tmp_path: Path) -> None:
    summary = train_view(tiny_overrides, "permuted_pixels", "data.permutation_seed=1")
    payload = checkpoint.load(summary["checkpoint"])
    stored = payload["data"]["permutation"]
    assert torch.equal(stored, permutation(784, 1)) and not torch.equal(stored, permutation(784, 0))

    # A config that names another seed changes nothing: the stored ordering is what eval applies.
    payload["config"]["data"]["permutation_seed"] = 0
    checkpoint.save(tmp_path / "other-seed.pt", payload)
    same = cli_json("eval", str(tmp_path / "other-seed.pt"))
    assert (same["accuracy"], same["loss"]) == (summary["test_accuracy"], pytest.approx(summary["test_loss"]))

    # ...and the ordering matters to this model: another stored permutation scores differently.
    payload["data"]["permutation"] = permutation(784, 0)
    checkpoint.save(tmp_path / "other-permutation.pt", payload)
    moved = cli_json("eval", str(tmp_path / "other-permutation.pt"))
    assert moved["loss"] != pytest.approx(summary["test_loss"], rel=1e-6)


@pytest.mark.parametrize("name, sequence", [("pixel_lstm", "pixels"), ("permuted_lstm", "permuted_pixels")])
def test_shipped_long_sequence_configs(name: str, sequence: str) -> None:
    path = ROOT / "configs" / f"{name}.yaml"
    assert path.read_text().startswith(f"# seqclf train --config configs/{name}.yaml")
    cfg = load_config(path)
    assert cfg.data.sequence == sequence and cfg.train.grad_clip > 0  # 784 steps: clip exploding gradients
