"""MNIST-style preprocessing on images the tests draw: polarity, position, size, colour modes, blanks."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from helpers import ROOT, process, time_limit
from PIL import Image, ImageDraw

from seqclf.data.images import ImageError, prepare, read_image, read_inputs


def seven(size: tuple[int, int] = (200, 150), at: tuple[int, int] = (70, 30), scale: float = 1.0,
          ink: object = 0, paper: object = 255, mode: str = "L") -> Image.Image:
    """A '7' (a bar and a slanted stroke), 60x90 pixels at `scale`, drawn at `at` on a plain canvas."""
    image = Image.new(mode, size, paper)
    draw = ImageDraw.Draw(image)
    x, y = at
    s = scale
    width = max(1, round(8 * s))
    draw.line([(x, y), (x + 60 * s, y)], fill=ink, width=width)
    draw.line([(x + 60 * s, y), (x + 20 * s, y + 90 * s)], fill=ink, width=width)
    return image


def ink_box(image: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.flatnonzero(image.sum(1) > 0), np.flatnonzero(image.sum(0) > 0)
    return rows[0], rows[-1] + 1, cols[0], cols[-1] + 1


def centre_of_mass(image: np.ndarray) -> tuple[float, float]:
    total = image.sum()
    return (np.arange(28) @ image.sum(1) / total, np.arange(28) @ image.sum(0) / total)


def test_dark_ink_on_light_paper_becomes_light_ink_20px_tall_centred_by_mass() -> None:
    out = prepare(seven(), 28, 28)
    assert out.shape == (28, 28) and out.dtype == np.uint8
    top, bottom, left, right = ink_box(out)
    assert bottom - top == 20  # the longer side (the stroke's height) fills 20 pixels
    assert right - left < 20  # aspect ratio kept
    assert out.max() == 255 and out[0].max() == 0 and out[:, 0].max() == 0  # bright ink on black
    row, col = centre_of_mass(out.astype(float))
    assert abs(row - 13.5) <= 0.5 and abs(col - 13.5) <= 0.5


def test_light_on_dark_off_centre_small_large_all_give_the_same_digit() -> None:
    reference = prepare(seven(), 28, 28).astype(float)
    variants = {
        "light on dark": seven(ink=255, paper=0),
        "off centre": seven(size=(400, 300), at=(300, 10)),
        "small": seven(size=(24, 24), at=(4, 3), scale=0.2),
        "large": seven(size=(2400, 1800), at=(100, 900), scale=8),
        "grey paper, dark grey ink": seven(ink=60, paper=180),
    }
    for name, image in variants.items():
        out = prepare(image, 28, 28).astype(float)
        # same digit, same place: the images overlap almost entirely
        overlap = (out * reference).sum() / np.sqrt((out ** 2).sum() * (reference ** 2).sum())
        assert overlap > 0.85, name
        assert abs(ink_box(out)[1] - ink_box(out)[0] - 20) <= 1, name


def test_rgb_rgba_palette_and_uneven_noisy_paper() -> None:
    reference = prepare(seven(), 28, 28).astype(float)
    rgb = seven(ink=(20, 20, 120), paper=(250, 240, 200), mode="RGB")
    rgba = seven(ink=(0, 0, 0, 255), paper=(0, 0, 0, 0), mode="RGBA")  # transparent paper counts as white
    palette = seven(mode="RGB").convert("P")
    grey_alpha = seven(ink=(0, 255), paper=(0, 0), mode="LA")
    sixteen = Image.fromarray(np.asarray(seven(), np.uint16) * 257)  # 16-bit greys, mode I;16
    rng = np.random.default_rng(0)
    shade = np.linspace(150, 250, 200)[None, :]  # light falling off across the page
    noisy = np.clip(np.asarray(seven(), float) / 255 * shade + rng.normal(0, 8, (150, 200)), 0, 255)
    assert sixteen.mode == "I;16"
    for name, image in {"RGB": rgb, "RGBA": rgba, "P": palette, "LA": grey_alpha, "I;16": sixteen,
                        "uneven": Image.fromarray(noisy.astype(np.uint8))}.items():
        out = prepare(image, 28, 28).astype(float)
        overlap = (out * reference).sum() / np.sqrt((out ** 2).sum() * (reference ** 2).sum())
        assert overlap > 0.85, name


def test_blank_images_are_errors_and_no_preprocess_is_a_plain_resize() -> None:
    grain = np.random.default_rng(0).normal(0, 10, (200, 300))  # grainy paper, lit from one side, nothing drawn
    paper = Image.fromarray(np.clip((230 + grain) * np.linspace(0.75, 1, 300)[None], 0, 255).astype(np.uint8))
    for blank in (Image.new("L", (50, 40), 255), Image.new("RGB", (50, 40), (30, 30, 30)),
                  Image.new("RGBA", (50, 40), (0, 0, 0, 0)), paper):
        with pytest.raises(ImageError, match="blank"):
            prepare(blank, 28, 28)
    image = seven()
    plain = prepare(image, 28, 28, preprocess=False)
    assert plain.shape == (28, 28)
    assert np.array_equal(plain, np.asarray(image.resize((28, 28), Image.Resampling.BILINEAR)))


def test_image_files_of_several_formats_and_bad_files(tmp_path: Path) -> None:
    reference = prepare(seven(), 28, 28)
    for suffix in (".png", ".bmp", ".gif", ".tiff", ".webp"):
        seven().save(tmp_path / f"seven{suffix}", **({"lossless": True} if suffix == ".webp" else {}))
        assert np.array_equal(read_image(tmp_path / f"seven{suffix}", 28, 28), reference), suffix
    seven().save(tmp_path / "seven.jpg", quality=90)
    seven(size=(3000, 2400), at=(500, 600), scale=15).save(tmp_path / "photo.jpg", quality=80)  # decoded at 1/4
    for name in ("seven.jpg", "photo.jpg"):
        out = read_image(tmp_path / name, 28, 28).astype(float)
        assert (out * reference).sum() / np.sqrt((out ** 2).sum() * (reference.astype(float) ** 2).sum()) > 0.9
    (tmp_path / "text.png").write_text("not an image")
    (tmp_path / "cut.png").write_bytes((tmp_path / "seven.png").read_bytes()[:100])
    for name in ("text.png", "cut.png"):
        with pytest.raises(ImageError):
            read_image(tmp_path / name, 28, 28)


def test_read_inputs_keeps_going_past_bad_inputs(tmp_path: Path) -> None:
    folder = tmp_path / "scans"
    (folder / "b").mkdir(parents=True)
    seven().save(folder / "b" / "2.png")
    seven().save(folder / "1.png")
    Image.new("L", (9, 9), 255).save(folder / "blank.png")
    (tmp_path / "empty").mkdir()
    np.save(tmp_path / "batch.npy", np.zeros((3, 28, 28), np.uint8))
    np.save(tmp_path / "wrong.npy", np.zeros((28, 27), np.uint8))
    sources = [folder, tmp_path / "empty", tmp_path / "batch.npy", tmp_path / "wrong.npy", tmp_path / "missing",
               seven(), np.full((28, 28), 7, np.uint8)]
    inputs = read_inputs(sources, 28, 28)
    assert inputs.names == [str(folder / "1.png"), str(folder / "b" / "2.png"), *(f"{tmp_path / 'batch.npy'}#{i}"
                            for i in range(3)), "image[5]", "array[6]"]
    assert inputs.stacked(28, 28).shape == (7, 28, 28)
    failed = dict(inputs.errors)
    assert set(failed) == {str(folder / "blank.png"), str(tmp_path / "empty"), str(tmp_path / "wrong.npy"),
                           str(tmp_path / "missing")}
    assert "blank" in failed[str(folder / "blank.png")] and "no images" in failed[str(tmp_path / "empty")]
    assert "(28, 27)" in failed[str(tmp_path / "wrong.npy")]


def npy_header(path: Path, shape: tuple[int, ...], dtype: str = "|u1", data: bytes = b"") -> Path:
    """A .npy file whose header claims `shape` and holds only `data`: a huge claim costs a few bytes."""
    header = f"{{'descr': '{dtype}', 'fortran_order': False, 'shape': {shape}, }}".encode()
    header += b" " * (63 - (10 + len(header)) % 64) + b"\n"  # pad to a multiple of 64, as numpy does
    path.write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + data)
    return path


def test_a_fifo_given_by_name_is_refused_not_read(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.png")
    good = tmp_path / "seven.png"
    seven().save(good)
    with time_limit(20):  # reading the FIFO would block forever
        inputs = read_inputs([tmp_path / "pipe.png", good], 28, 28)
    assert inputs.names == [str(good)]
    assert inputs.errors == [(str(tmp_path / "pipe.png"), inputs.errors[0][1])]
    assert inputs.errors[0][1].startswith("not a regular file")


def test_an_unreadable_subfolder_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "digits" / "locked").mkdir(parents=True)
    seven().save(tmp_path / "digits" / "seven.png")
    seven().save(tmp_path / "digits" / "locked" / "hidden.png")
    (tmp_path / "digits" / "locked").chmod(0)
    if os.geteuid() == 0:  # root reads any folder: make listing it fail as it fails for a user
        real_scandir = os.scandir

        def scandir(path: object = ".") -> object:
            if Path(os.fsdecode(path)).name == "locked":
                raise PermissionError(13, "Permission denied", os.fsdecode(path))
            return real_scandir(path)

        monkeypatch.setattr(os, "scandir", scandir)
    try:
        inputs = read_inputs([tmp_path / "digits"], 28, 28)
    finally:
        (tmp_path / "digits" / "locked").chmod(0o755)
    assert inputs.names == [str(tmp_path / "digits" / "seven.png")]
    assert [name for name, _ in inputs.errors] == [str(tmp_path / "digits" / "locked")]
    assert "a folder that cannot be read (Permission denied)" in inputs.errors[0][1]


def test_npy_headers_promising_more_than_the_file_holds_are_refused_before_loading(tmp_path: Path) -> None:
    huge = npy_header(tmp_path / "huge.npy", (10**11, 28, 28))
    short = npy_header(tmp_path / "short.npy", (2, 28, 28), data=bytes(784))
    negative = npy_header(tmp_path / "negative.npy", (-1, 28, 28))
    objects = npy_header(tmp_path / "objects.npy", (1, 28, 28), dtype="|O")
    good = tmp_path / "good.npy"
    np.save(good, np.zeros((2, 28, 28), np.uint8))
    inputs = read_inputs([huge, short, negative, objects, good], 28, 28)
    assert inputs.names == [f"{good}#0", f"{good}#1"]  # the good input survives the others
    errors = dict(inputs.errors)
    assert "promises (100000000000, 28, 28) uint8 = 78,400,000,000,000 bytes" in errors[str(huge)]
    assert "holds 784" in errors[str(short)]
    assert "negative sizes" in errors[str(negative)] or "not a readable .npy" in errors[str(negative)]
    assert "object" in errors[str(objects)]


def test_an_empty_npy_a_looping_link_and_a_nan_tiff_are_each_reported(tmp_path: Path) -> None:
    np.save(tmp_path / "empty.npy", np.zeros((0, 28, 28), np.uint8))
    os.symlink(tmp_path / "loop.png", tmp_path / "loop.png")
    os.symlink(tmp_path / "gone.png", tmp_path / "dangling.png")
    nan = np.full((40, 40), 200, np.float32)
    nan[3, 3] = np.nan
    Image.fromarray(nan, "F").save(tmp_path / "nan.tif")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning may leak from NaN pixels
        inputs = read_inputs([tmp_path / name for name in ("empty.npy", "loop.png", "dangling.png", "nan.tif")],
                             28, 28)
    errors = {Path(name).name: why for name, why in inputs.errors}
    assert inputs.names == [] and set(errors) == {"empty.npy", "loop.png", "dangling.png", "nan.tif"}
    assert errors["empty.npy"].startswith("holds no images")
    assert "Too many levels of symbolic links" in errors["loop.png"]
    assert errors["dangling.png"] == f"a broken symbolic link (to {tmp_path / 'gone.png'})"
    assert "NaN or infinite" in errors["nan.tif"]


def png16(path: Path, side: int) -> Path:
    """A side x side 16-bit grey PNG, white with a dark bar across its middle third, written row by row: a
    file of about 1 MB for side 11000 (242 MB of pixels) without holding the image in memory."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    third = side // 3
    paper = b"\0" + b"\xff\xff" * side  # a row: filter byte 0, then big-endian 16-bit pixels
    inked = b"\0" + b"\xff\xff" * third + b"\0\0" * third + b"\xff\xff" * (side - 2 * third)
    packer = zlib.compressobj(1)
    data = b"".join(packer.compress(inked if third <= y < 2 * third else paper) for y in range(side))
    header = struct.pack(">IIBBBBB", side, side, 16, 0, 0, 0, 0)  # 16-bit greyscale
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data + packer.flush())
                     + chunk(b"IEND", b""))
    return path


@process  # a child process, so that its peak memory is the decode's alone
def test_a_huge_16_bit_png_is_read_in_bounded_memory_without_pillows_warning(tmp_path: Path) -> None:
    import subprocess
    import sys

    big = png16(tmp_path / "big.png", 11000)  # 121 megapixels: past Pillow's warning, under its error
    probe = ("import resource, sys\nfrom pathlib import Path\nfrom seqclf.data.images import read_inputs\n"
             "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
             "inputs = read_inputs([Path(sys.argv[1])], 28, 28)\n"
             "print(inputs.errors, int(inputs.stacked(28, 28).sum() > 0),"
             " (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)\n")
    done = subprocess.run([sys.executable, "-c", probe, str(big)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    errors, inked, grown_mb = done.stdout.split()
    assert (errors, inked) == ("[]", "1")  # the bar was found
    assert "Warning" not in done.stderr, done.stderr
    assert int(grown_mb) < 2 * 242, grown_mb  # the decoded 16-bit pixels (242 MB) and a little more
