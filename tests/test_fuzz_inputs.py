"""Property tests of what predict and tune read from disk: any .npy header, any image size and mode, any
damage to a study's journal ends in images or a message, never a traceback or an allocation of what
a header merely claims."""

from __future__ import annotations

import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from helpers import time_limit
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from seqclf.config import load_config
from seqclf.data.idx import DataError
from seqclf.data.images import read_inputs
from seqclf.data.inputfiles import read_npy
from seqclf.errors import SeqclfError

SOME = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
sizes = st.one_of(st.integers(-3, 40), st.sampled_from([28, 2**31, 2**63, 10**11, 10**30]))


def npy(shape: object, descr: str, fortran: bool, data: bytes) -> bytes:
    header = f"{{'descr': {descr!r}, 'fortran_order': {fortran}, 'shape': {shape}, }}".encode()
    header += b" " * (63 - (10 + len(header)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + data


@SOME
@given(shape=st.one_of(st.lists(sizes, max_size=4).map(tuple), st.sampled_from(["(", "'x'", "None", "(1,)*3"])),
       descr=st.sampled_from(["|u1", "<f4", ">f8", "<i8", "|b1", "|O", "<U3", "garbage", "<c8", "|V4"]),
       fortran=st.booleans(), data=st.integers(0, 3 * 784))
def test_any_npy_header_is_images_or_a_message(shape: object, descr: str, fortran: bool, data: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "x.npy"
        path.write_bytes(npy(shape, descr, fortran, bytes(range(256)) * (data // 256) + bytes(data % 256)))
        with time_limit(10):
            inputs = read_inputs([path], 28, 28)
    assert len(inputs.errors) + len(inputs.names) >= 1
    assert all(name == str(path) for name, _ in inputs.errors)
    if inputs.names:
        assert inputs.stacked(28, 28).shape == (len(inputs.names), 28, 28)


MODES = ["L", "RGB", "RGBA", "LA", "P", "1", "I", "I;16", "F", "CMYK"]


@SOME
@given(width=st.integers(0, 1500), height=st.integers(0, 1500), mode=st.sampled_from(MODES),
       seed=st.integers(0, 2**32 - 1), preprocess=st.booleans())
def test_any_image_size_and_mode_is_an_image_or_a_message(width: int, height: int, mode: str, seed: int,
                                                          preprocess: bool) -> None:
    image = Image.new(mode, (width, height))
    if width and height:  # a random mark, so that some images have ink
        rng = np.random.default_rng(seed)
        x, y = rng.integers(0, width), rng.integers(0, height)
        image.paste(255 if mode not in ("RGB", "RGBA", "CMYK") else (255,) * len(image.getbands()),
                    (x, y, min(width, x + 1 + width // 3), min(height, y + 1 + height // 3)))
    with time_limit(20):
        inputs = read_inputs([image], 28, 28, preprocess)
    assert len(inputs.errors) + len(inputs.names) == 1


def png_header(width: int, height: int, depth: int, colour: int, data: bytes) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(data)) + chunk(b"IEND", b""))


@SOME
@given(width=st.sampled_from([0, 1, 28, 5000, 20000, 70000, 2**31 - 1]),
       height=st.sampled_from([0, 1, 28, 5000, 20000, 70000, 2**31 - 1]),
       kind=st.sampled_from([(8, 0), (16, 0), (8, 2), (8, 6), (1, 0), (16, 6)]), data=st.binary(max_size=64))
def test_a_png_header_claiming_any_size_is_an_image_or_a_message(width: int, height: int, kind: tuple[int, int],
                                                                 data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "claim.png"
        path.write_bytes(png_header(width, height, *kind, data))
        with time_limit(20):
            inputs = read_inputs([path], 28, 28)
    assert len(inputs.errors) + len(inputs.names) == 1


@pytest.fixture(scope="module")
def journal(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The bytes of a journal holding a study of three trials, written by Optuna itself."""
    optuna = pytest.importorskip("optuna")
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    path = tmp_path_factory.mktemp("journal") / "journal.log"
    study = optuna.create_study(storage=JournalStorage(JournalFileBackend(str(path))), study_name="tune",
                                direction="maximize")
    for value in (0.1, 0.5, 0.3):
        trial = study.ask()
        trial.suggest_float("train.lr", 1e-4, 1e-2, log=True)
        study.tell(trial, value)
    return path.read_bytes()


@SOME
@given(data=st.data())
def test_any_damage_to_a_journal_is_a_study_or_a_message(journal: bytes, data: st.DataObject) -> None:
    from seqclf.search.study import study_info

    damaged = bytearray(journal)
    for _ in range(data.draw(st.integers(1, 4))):
        where = data.draw(st.integers(0, len(damaged)))
        kind = data.draw(st.sampled_from(["overwrite", "nul", "delete", "truncate", "insert"]))
        piece = data.draw(st.binary(min_size=1, max_size=12))
        if kind == "overwrite":
            damaged[where:where + len(piece)] = piece
        elif kind == "nul":
            damaged[where:where + len(piece)] = bytes(len(piece))
        elif kind == "delete":
            del damaged[where:where + len(piece)]
        elif kind == "truncate":
            del damaged[where:]
        else:
            damaged[where:where] = piece
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "tune").mkdir()
        (Path(folder) / "tune" / "journal.log").write_bytes(bytes(damaged))
        base = load_config(None, [f"output.dir={folder}"])
        with time_limit(20):
            try:
                info = study_info("tune", None, base)
            except SeqclfError as exc:
                assert "journal" in str(exc) or "no such study" in str(exc), exc
            else:
                assert info["study"] == "tune"


def test_a_npy_header_with_a_size_past_a_c_long_is_a_message(tmp_path: Path) -> None:
    """Found by the header fuzz: zero images of 10**30 pixels hold 0 bytes, and numpy overflows reading them."""
    path = tmp_path / "huge.npy"
    with open(path, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, {"descr": "|u1", "fortran_order": False,
                                                      "shape": (0, 10**30)})
    with pytest.raises(DataError, match="huge.npy: not a readable .npy array"):
        read_npy(path)
