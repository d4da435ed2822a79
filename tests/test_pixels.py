"""seqclf.data.pixels: the statistics a checkpoint records of its training images, and when data differ."""

from __future__ import annotations

import pytest
import torch
from helpers import make_dataset

from seqclf.config import load_config
from seqclf.data import pixels
from seqclf.data.datasets import load_data

# the published statistics of the real datasets' training images (pixel / 255)
MNIST = {"mean": 0.1307, "std": 0.3081, "background": 0.0}
FASHION = {"mean": 0.2860, "std": 0.3530, "background": 0.0}
KMNIST = {"mean": 0.1918, "std": 0.3483, "background": 0.0}


def test_stats_are_exact_and_the_background_is_the_border_median() -> None:
    images = torch.zeros(2, 4, 4, dtype=torch.uint8)
    images[:, 1:3, 1:3] = 255  # a bright square inside a dark border
    assert pixels.stats(images) == {"mean": 0.25, "std": pytest.approx(0.433013, abs=1e-6), "background": 0.0}
    assert pixels.stats(255 - images)["background"] == 1.0
    assert pixels.shades(torch.stack([images[0], 255 - images[1]])) == ["dark", "bright"]
    edges = torch.zeros(1, 8, 8, dtype=torch.uint8)
    edges[0, 0], edges[0, :, 0] = 255, 255  # a mark along two edges: the border's median is bright, the image's dark
    assert pixels.shades(edges) == [None]


@pytest.mark.parametrize("found, n, differs", [
    (FASHION, 10_000, True),   # MNIST's model on Fashion-MNIST: the mean moves by 0.16
    (KMNIST, 10_000, True),    # on KMNIST: by 0.06
    ({"mean": 0.1325, "std": 0.3104, "background": 0.0}, 10_000, False),  # MNIST's own test split
    ({"mean": 0.2100, "std": 0.3500, "background": 0.0}, 30, False),  # 30 images: their mean wanders
    ({"mean": 0.9, "std": 0.1, "background": 1.0}, 9, False),  # too few images to judge
    ({"mean": 0.9, "std": 0.1, "background": 1.0}, 10, True),
    ({"mean": 0.8693, "std": 0.3081, "background": 1.0}, 10_000, True),  # inverted: dark ink on white
    ({"mean": 0.1307, "std": 0.1500, "background": 0.0}, 10_000, True),  # faint, low-contrast images
])
def test_data_differ_beyond_sampling_noise(found: dict, n: int, differs: bool) -> None:
    assert pixels.differ(MNIST, found, n) is differs


def test_load_data_gives_each_loaded_split_its_stats(tmp_path) -> None:
    root = make_dataset(tmp_path / "data", n_train=200, n_test=50)
    cfg = load_config(None, ["data.name=idx", f"data.root={root}", "data.val_size=50"])
    data = load_data(cfg.data, 0, splits=("train", "test"))
    assert set(data.pixels) == {"train", "test"}
    assert data.pixels["train"]["mean"] == pytest.approx(data.mean, abs=1e-6)  # normalization's own mean
    unnormalized = load_data(load_config(None, ["data.name=idx", f"data.root={root}", "data.val_size=50",
                                               "data.normalize=false"]).data, 0, splits=("train",))
    assert unnormalized.mean == 0.0 and unnormalized.pixels["train"] == data.pixels["train"]  # recorded even so
