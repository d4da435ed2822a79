"""seqclf.data.datasets on tiny IDX files written into tmp_path: reading, locating, views, splits."""

from __future__ import annotations

import gzip
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import make_dataset, write_idx

from seqclf.config import DataConfig
from seqclf.data.datasets import load_data
from seqclf.data.files import FILES, load_arrays, locate
from seqclf.data.idx import DataError, read_idx
from seqclf.data.views import permutation, to_sequences, view_shape


def idx_cfg(root: Path, **changes) -> DataConfig:
    return replace(DataConfig(name="idx", root=str(root), download=False, val_size=100), **changes)


# ---------------------------------------------------------------- read_idx


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_idx_round_trips_images_and_labels(tmp_path, suffix):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    labels = np.array([7, 0, 255], dtype=np.uint8)
    got_images = read_idx(write_idx(tmp_path / f"images{suffix}", images))
    got_labels = read_idx(write_idx(tmp_path / f"labels{suffix}", labels))
    assert got_images.dtype == torch.uint8 and got_images.shape == (2, 3, 4)
    assert torch.equal(got_images, torch.from_numpy(images))
    assert torch.equal(got_labels, torch.from_numpy(labels))


def _valid_bytes() -> bytes:
    return bytes([0, 0, 8, 1]) + (3).to_bytes(4, "big") + bytes([1, 2, 3])


@pytest.mark.parametrize("content, fragment", [
    (bytes([0, 0, 0x0D, 1]) + (3).to_bytes(4, "big") + bytes(12), "magic 0x00000d01"),  # float data
    (b"PK\x03\x04" + bytes(20), "0x00000803"),  # a zip file: the message lists the valid magics
    (bytes([0, 0, 8, 2]) + (2).to_bytes(4, "big") * 2 + bytes(4), "2 dims"),
    (_valid_bytes()[:-1], "truncated"),
    (bytes([0, 0, 8, 3]) + (2).to_bytes(4, "big"), "truncated"),  # header cut short
    (b"\x00\x00", "truncated"),
    (_valid_bytes() + b"\x00\x00", "2 bytes more"),
])
def test_read_idx_rejects_malformed_files_naming_them(tmp_path, content, fragment):
    path = tmp_path / "broken-labels-idx1-ubyte"
    path.write_bytes(content)
    with pytest.raises(DataError) as info:
        read_idx(path)
    assert path.name in str(info.value) and fragment in str(info.value)


@pytest.mark.parametrize("content", [b"not gzip at all", gzip.compress(_valid_bytes())[:-6]],
                         ids=["not-gzip", "cut-gzip"])
def test_read_idx_rejects_bad_gzip(tmp_path, content):
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(content)
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz"):
        read_idx(path)


# ---------------------------------------------------------------- locate / load_arrays


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("layout, name", [("flat", "idx"), ("flat", "mnist"), ("torchvision", "fashion_mnist")])
def test_locate_finds_both_layouts(tmp_path, layout, name, gz):
    make_dataset(tmp_path, n_train=20, n_test=10, layout=layout, gz=gz, name="FashionMNIST")
    found = locate(replace(idx_cfg(tmp_path), name=name))
    assert found is not None and set(found) == set(FILES)
    folder = tmp_path / "FashionMNIST" / "raw" if layout == "torchvision" else tmp_path
    assert found["test_labels"] == folder / (FILES["test_labels"] + (".gz" if gz else ""))


def test_locate_prefers_plain_and_idx_ignores_torchvision_layout(tmp_path):
    make_dataset(tmp_path, n_train=20, n_test=10, gz=True)
    make_dataset(tmp_path, n_train=20, n_test=10)
    assert locate(idx_cfg(tmp_path))["train_images"].suffix == ""
    make_dataset(tmp_path / "nested", n_train=20, n_test=10, layout="torchvision", name="MNIST")
    assert locate(idx_cfg(tmp_path / "nested")) is None
    assert locate(replace(idx_cfg(tmp_path / "nested"), name="mnist")) is not None


def test_missing_data_says_in_one_line_where_it_looked_and_what_to_do(tmp_path):
    cfg = replace(idx_cfg(tmp_path), name="kmnist")
    with pytest.raises(DataError) as info:
        load_arrays(cfg)
    looked, fix = str(info.value).split("\n")
    assert f"not found in {tmp_path / 'KMNIST' / 'raw'} or {tmp_path} (data.download is false)" in looked
    assert all(looked.count(filename) == 1 for filename in FILES.values()) and looked.count(str(tmp_path)) == 2
    assert fix.startswith("Fix: point data.root at the folder") and "dataset-fashion-mnist" in fix


def test_a_failed_download_shows_every_mirror_and_its_whole_error(tmp_path, monkeypatch):
    """torchvision's own message (one line per mirror tried), whole, each on its own line; no network: the
    download itself fails as it does offline."""
    from urllib.error import URLError

    from torchvision.datasets import mnist

    def offline(url: str, **kwargs: object) -> None:
        raise URLError(OSError(-2, "Name or service not known, a cause long enough to have been cut before"))

    monkeypatch.setattr(mnist, "download_and_extract_archive", offline)
    with pytest.raises(DataError) as info:
        load_arrays(replace(idx_cfg(tmp_path), name="mnist", download=True))
    lines = str(info.value).splitlines()
    assert lines[0].endswith("and downloading them failed:") and lines[-1].startswith("Fix: ")
    tried = [line for line in lines if line.startswith("  Tried ")]
    assert len(tried) == len(mnist.MNIST.mirrors) > 1
    assert all(line.endswith("Name or service not known, a cause long enough to have been cut before>")
               for line in tried), tried


def test_load_arrays_checks_counts_match(tmp_path):
    make_dataset(tmp_path, n_train=20, n_test=10)
    write_idx(tmp_path / FILES["test_labels"], np.zeros(9, dtype=np.uint8))
    with pytest.raises(DataError, match="10 images.*9 labels") as info:
        load_arrays(idx_cfg(tmp_path))
    assert FILES["test_images"] in str(info.value) and FILES["test_labels"] in str(info.value)


def test_load_arrays_checks_image_sizes_match(tmp_path):
    make_dataset(tmp_path, n_train=20, n_test=10)
    write_idx(tmp_path / FILES["test_images"], np.zeros((10, 14, 14), dtype=np.uint8))
    with pytest.raises(DataError, match="sizes differ"):
        load_arrays(idx_cfg(tmp_path))


def test_load_arrays_dtypes(tmp_path):
    make_dataset(tmp_path, n_train=20, n_test=10, size=12)
    arrays = load_arrays(idx_cfg(tmp_path))
    assert arrays.train_images.shape == (20, 12, 12) and arrays.train_images.dtype == torch.uint8
    assert arrays.train_labels.dtype == torch.int64 and sorted(arrays.test_labels.tolist()) == list(range(10))


# ---------------------------------------------------------------- sequence views


IMAGE = torch.arange(12, dtype=torch.uint8).reshape(1, 3, 4)  # H=3, W=4: row r holds 4r..4r+3


def test_sequence_views_shapes_and_pixel_order():
    assert torch.equal(to_sequences(IMAGE, "rows")[0, 1], torch.tensor([4, 5, 6, 7], dtype=torch.uint8))
    columns = to_sequences(IMAGE, "columns")
    assert columns.shape == (1, 4, 3) and columns[0, 1].tolist() == [1, 5, 9]  # column 1, top to bottom
    pixels = to_sequences(IMAGE, "pixels")
    assert pixels.shape == (1, 12, 1) and pixels.flatten().tolist() == list(range(12))
    perm = torch.tensor([11, 0, 5, 1, 2, 3, 4, 6, 7, 8, 9, 10])
    permuted = to_sequences(IMAGE, "permuted_pixels", perm)
    assert permuted.shape == (1, 12, 1) and permuted.flatten().tolist() == perm.tolist()
    assert all(v.dtype == torch.uint8 for v in (columns, pixels, permuted))


@pytest.mark.parametrize("sequence, expected", [("rows", (3, 4)), ("columns", (4, 3)), ("pixels", (12, 1)),
                                                ("permuted_pixels", (12, 1))])
def test_view_shape_matches_the_view(sequence, expected):
    perm = permutation(12, 0) if sequence == "permuted_pixels" else None
    assert view_shape(sequence, height=3, width=4) == expected == tuple(to_sequences(IMAGE, sequence, perm).shape[1:])


def test_bad_sequence_and_bad_permutation():
    with pytest.raises(DataError, match="rows, columns"):
        to_sequences(IMAGE, "diagonal")
    with pytest.raises(DataError, match="bijection"):
        to_sequences(IMAGE, "permuted_pixels", torch.zeros(12, dtype=torch.long))


def test_permutation_is_a_seeded_bijection():
    assert torch.equal(permutation(784, 3), permutation(784, 3))
    assert not torch.equal(permutation(784, 3), permutation(784, 4))
    assert permutation(784, 3).dtype == torch.int64
    assert torch.equal(permutation(784, 3).sort().values, torch.arange(784))


# ---------------------------------------------------------------- load_data


@pytest.fixture
def small(tmp_path) -> Path:
    return make_dataset(tmp_path / "small", n_train=300, n_test=50, size=10)


def _row_keys(x: torch.Tensor) -> set[bytes]:
    return {row.numpy().tobytes() for row in x}


def test_load_data_splits_are_sized_disjoint_and_cover_the_training_file(small):
    data = load_data(idx_cfg(small, val_size=60, normalize=False), seed=1)
    assert (len(data.train), len(data.val), len(data.test)) == (240, 60, 50)
    assert data.train.x.shape == (240, 10, 10) and data.train.x.dtype == torch.float32
    assert data.train.y.dtype == torch.int64 and data.num_classes == 10
    assert (data.input_size, data.seq_len, data.mean, data.std) == (10, 10, 0.0, 1.0)
    # with noise every image is distinct, so the pixels identify the file's examples
    everything = load_arrays(idx_cfg(small)).train_images.float().div(255)
    train, val = _row_keys(data.train.x), _row_keys(data.val.x)
    assert len(train) == 240 and not train & val and train | val == _row_keys(everything)


def test_load_data_is_determined_by_the_seed(small):
    cfg = idx_cfg(small, val_size=60)
    a, b, c = load_data(cfg, seed=5), load_data(cfg, seed=5), load_data(cfg, seed=6)
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.val.y, b.val.y) and (a.mean, a.std) == (b.mean, b.std)
    assert not torch.equal(a.val.x, c.val.x)
    assert torch.equal(a.test.y, c.test.y)  # the test split never depends on the seed (its scaling does)


def test_normalization_uses_train_stats_or_the_given_ones(small):
    cfg = idx_cfg(small, val_size=60)
    data = load_data(cfg, seed=0)
    train_pixels = data.train.x * data.std + data.mean  # back to pixel / 255
    assert data.mean == pytest.approx(train_pixels.double().mean().item(), abs=1e-6)
    assert abs(data.train.x.double().mean().item()) < 1e-5
    assert data.train.x.double().std().item() == pytest.approx(1, 1e-3)
    only_test = load_data(cfg, seed=0, splits=("test",), stats=(0.5, 0.25))
    assert (only_test.mean, only_test.std) == (0.5, 0.25) and only_test.train is None and only_test.val is None
    raw = load_arrays(cfg).test_images.float().div(255)
    assert torch.allclose(only_test.test.x, (raw - 0.5) / 0.25)


def test_eval_splits_reproduce_training_exactly(small):
    cfg = idx_cfg(small, val_size=60, sequence="permuted_pixels", permutation_seed=9)
    full = load_data(cfg, seed=2)
    val_only = load_data(cfg, seed=2, splits=("val",))  # stats recomputed from the train portion
    assert val_only.train is None and torch.equal(full.val.x, val_only.val.x)
    assert torch.equal(full.permutation, permutation(100, 9)) and full.val.x.shape == (60, 100, 1)
    other = load_data(cfg, seed=2, splits=("test",), stats=(full.mean, full.std), perm=permutation(100, 1))
    assert torch.equal(other.permutation, permutation(100, 1)) and not torch.equal(other.test.x, full.test.x)


def test_max_train_max_test_and_views(small):
    cfg = idx_cfg(small, val_size=20, max_train=100, max_test=7, sequence="pixels", normalize=False)
    data = load_data(cfg, seed=0)
    assert (len(data.train), len(data.val), len(data.test)) == (100, 20, 7)  # max_train examples are trained on
    assert data.train.x.shape == (100, 100, 1) and (data.seq_len, data.input_size) == (100, 1)
    assert data.permutation is None
    everything = load_data(replace(cfg, max_test=None), seed=0, splits=("test",))
    assert len(everything.test) == 50 and torch.equal(data.test.x, everything.test.x[:7])
    columns = load_data(idx_cfg(small, val_size=20, sequence="columns", normalize=False), seed=0, splits=("test",))
    assert torch.equal(columns.test.x, load_arrays(idx_cfg(small)).test_images.transpose(1, 2).float() / 255)


def test_val_size_too_big_is_named(small):
    with pytest.raises(DataError,
                       match=r"data\.val_size \(300\) must be smaller than the training file, which has 300"):
        load_data(idx_cfg(small, val_size=300), seed=0)


def test_max_train_caps_training_after_validation_is_held_out(small):
    """Validation comes out of the training file first, so max_train is what is trained on, even when it is
    smaller than val_size; the validation split does not depend on max_train."""
    full = load_data(idx_cfg(small, val_size=200, normalize=False), seed=3, splits=("train", "val"))
    capped = load_data(idx_cfg(small, val_size=200, max_train=30, normalize=False), seed=3, splits=("train", "val"))
    assert (len(full.train), len(capped.train), len(capped.val)) == (100, 30, 200)
    assert torch.equal(capped.val.x, full.val.x) and torch.equal(capped.train.x, full.train.x[:30])


def test_real_fashion_mnist_header(fashion_root):
    cfg = DataConfig(name="fashion_mnist", root=str(fashion_root), download=False, val_size=5000)
    start = time.perf_counter()
    data = load_data(cfg, seed=0, splits=("train", "val", "test"))
    print(f"loaded Fashion-MNIST in {time.perf_counter() - start:.2f}s")  # reported, not asserted
    assert (len(data.train) + len(data.val), len(data.test)) == (60000, 10000)
    assert data.train.x.shape[1:] == (28, 28) and data.num_classes == 10
    assert 0.2 < data.mean < 0.4 and 0.3 < data.std < 0.4
    assert data.warnings == []
    misnamed = load_data(replace(cfg, name="mnist"), seed=0, splits=("val",))  # the files can tell
    assert [w for w in misnamed.warnings if "did you mean data.name=fashion_mnist?" in w
            and "look like Fashion-MNIST's" in w], misnamed.warnings


def test_another_datasets_folder_under_root_is_suggested(tmp_path):
    make_dataset(tmp_path, n_train=20, n_test=10, layout="torchvision", name="FashionMNIST")
    for name in ("mnist", "idx"):
        with pytest.raises(DataError) as info:
            load_arrays(idx_cfg(tmp_path, name=name))
        assert (f"{tmp_path / 'FashionMNIST' / 'raw'} holds fashion_mnist's files; did you mean "
                f"data.name=fashion_mnist?") in str(info.value), str(info.value)
    with pytest.raises(DataError) as info:  # a checkpoint's data.name cannot change (eval, --resume)
        load_arrays(idx_cfg(tmp_path, name="mnist"), for_checkpoint=True)
    assert "did you mean" not in str(info.value)


def test_max_train_above_what_exists_is_a_warning_naming_both_counts(small):
    data = load_data(idx_cfg(small, val_size=200, max_train=5000), seed=0, splits=("train", "val"))
    assert len(data.train) == 100
    assert data.warnings == ["data.max_train=5000 asks for more than the 100 training examples there are (300 in "
                             "the training file less data.val_size=200): training on those 100"]
    assert load_data(idx_cfg(small, val_size=200, max_train=100), seed=0, splits=("train", "val")).warnings == []
