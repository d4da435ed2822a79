"""Inputs for prediction: image files, folders, IDX files, .npy arrays -> (N, H, W) uint8 images.

Image files get MNIST-style preprocessing (as MNIST itself was made): greyscale (transparency
over white), polarity detected so that ink is bright on dark, the paper's background removed,
the ink cropped to its bounding box, its longer side scaled to 20 pixels (of 28) keeping the
aspect ratio, and placed in the frame by its centre of mass. IDX files and arrays are taken
as dataset images, unchanged. All pixel work is numpy or Pillow on whole arrays.

One bad input never stops the others: each failure is kept as (input, why) beside the images.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from seqclf.config.limits import check_memory
from seqclf.data.inputfiles import first_bytes, image_files, read_npy, unusable
from seqclf.errors import SeqclfError

MAX_SIDE = 512  # larger images are box-downscaled first: 20 output pixels need no more, and it keeps work bounded
BOX = 20 / 28  # MNIST: the digit's longer side fills 20 of the frame's 28 pixels
MIN_CONTRAST = 32  # ink must differ from the paper by this much (of 255), or the image is blank
INK_THRESHOLD = 0.3  # of the stroke level: fainter differences are paper texture or noise, not ink
TRIM = 0.005  # share of ink mass cut off each side of the bounding box, so stray specks do not stretch it


class ImageError(SeqclfError):
    """One input cannot be used (unreadable, blank, wrong shape); the message names it and why."""


@dataclass
class Inputs:
    names: list[str] = field(default_factory=list)  # one per image: the path, FILE#i, or image[i] / array[i]
    images: list[np.ndarray] = field(default_factory=list)  # chunks of (n, H, W) uint8
    errors: list[tuple[str, str]] = field(default_factory=list)  # (input, why)

    def add(self, names: list[str], images: np.ndarray) -> None:
        self.names.extend(names)
        self.images.append(images)

    def stacked(self, height: int, width: int) -> np.ndarray:
        """All images as one (N, H, W) uint8 array."""
        return np.concatenate(self.images) if self.images else np.zeros((0, height, width), np.uint8)


def read_inputs(sources: Iterable[Any], height: int, width: int, preprocess: bool = True) -> Inputs:
    """Paths (files or folders), PIL images and arrays -> Inputs for a (height, width) model."""
    from PIL import Image

    inputs = Inputs()
    for i, source in enumerate(sources):
        if isinstance(source, Image.Image):
            _collect(inputs, f"image[{i}]", prepare, source, height, width, preprocess)
        elif isinstance(source, (np.ndarray,)) or hasattr(source, "__array__"):
            _collect_array(inputs, f"array[{i}]", np.asarray(source), height, width)
        else:
            _read_path(inputs, Path(source), height, width, preprocess)
    return inputs


def _collect(inputs: Inputs, name: str, make: Callable[..., np.ndarray], *args: Any) -> None:
    """Add make(*args), one (H, W) image, under `name`, or its ImageError to the errors."""
    try:
        inputs.add([name], make(*args)[None])
    except ImageError as exc:
        inputs.errors.append((name, str(exc)))


def _collect_array(inputs: Inputs, name: str, array: np.ndarray, height: int, width: int) -> None:
    try:
        images = as_dataset_images(array, height, width)
    except ImageError as exc:
        inputs.errors.append((name, str(exc)))
        return
    if not len(images):
        inputs.errors.append((name, f"holds no images (shape {tuple(array.shape)})"))
        return
    names = [name] if array.ndim == 2 else [f"{name}#{j}" for j in range(len(images))]
    inputs.add(names, images)


def _read_path(inputs: Inputs, path: Path, height: int, width: int, preprocess: bool) -> None:
    why = unusable(path)
    if why:
        inputs.errors.append((str(path), why))
        return
    if path.is_dir():
        files = image_files(path, inputs.errors)
        if not files:
            why = ("the folder holds no images (looked recursively for .png, .jpg, .bmp, .gif, .tif, .webp and "
                   "the other formats Pillow reads)")
            inputs.errors.append((str(path), why))
        for file in files:
            _collect(inputs, str(file), read_image, file, height, width, preprocess)
        return
    try:
        head = first_bytes(path)
    except OSError as exc:
        inputs.errors.append((str(path), f"cannot be read ({exc.strerror or exc})"))
        return
    if head[:6] == b"\x93NUMPY":
        try:
            array = read_npy(path)
        except SeqclfError as exc:
            inputs.errors.append((str(path), str(exc).removeprefix(f"{path}: ")))
            return
        _collect_array(inputs, str(path), array, height, width)
    elif head[:3] == b"\x00\x00\x08" or path.suffix == ".gz":
        _read_idx(inputs, path, height, width)
    else:
        _collect(inputs, str(path), read_image, path, height, width, preprocess)


def _read_idx(inputs: Inputs, path: Path, height: int, width: int) -> None:
    from seqclf.data.idx import read_idx

    try:
        array = read_idx(path).numpy()
        if array.ndim != 3:
            raise ImageError(f"an IDX file of labels ({array.ndim} dim), not of images; give the images file "
                             f"(magic 0x00000803, e.g. t10k-images-idx3-ubyte.gz)")
        images = as_dataset_images(array, height, width)
    except SeqclfError as exc:
        inputs.errors.append((str(path), str(exc).removeprefix(f"{path}: ")))
        return
    inputs.add([f"{path}#{i}" for i in range(len(images))], images)


def as_dataset_images(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """An (H, W) or (N, H, W) array of pixel values 0..255 -> (N, H, W) uint8, checked."""
    if array.ndim not in (2, 3) or array.shape[-2:] != (height, width):
        raise ImageError(f"an array of shape {tuple(array.shape)}; the model reads ({height}, {width}) images: "
                         f"give shape ({height}, {width}) or (N, {height}, {width})")
    if array.dtype != np.uint8:
        if array.dtype.kind not in "iuf":
            raise ImageError(f"an array of {array.dtype}; give pixel values 0..255 (uint8)")
        if array.size and not (np.isfinite(array).all() and array.min() >= 0 and array.max() <= 255):
            raise ImageError(f"values outside 0..255 (min {array.min()}, max {array.max()}); give pixel values "
                             f"0..255 as in the training images")
        array = np.rint(array).astype(np.uint8)
    return array.reshape(-1, height, width)


def read_image(path: Path, height: int, width: int, preprocess: bool = True) -> np.ndarray:
    """One image file -> (H, W) uint8, MNIST-style unless preprocess is False."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            # past Pillow's warning size the memory check below decides; its error size still refuses
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
        with image:
            if image.format == "JPEG":  # decode a large photo at a reduced scale directly (1/2, 1/4 or 1/8)
                image.draft(image.mode, (MAX_SIDE, MAX_SIDE))
            decoded = image.width * image.height * len(image.getbands()) * (2 if "16" in image.mode else 4
                                                                          if image.mode in ("I", "F") else 1)
            check_memory(f"a {image.width}x{image.height} {image.mode} image", 2 * decoded,
                         "scale it down first", ImageError)
            image.load()
            return prepare(shrink(image), height, width, preprocess)
    except Image.DecompressionBombError as exc:
        raise ImageError(f"too large to read safely ({exc}); scale it down first") from None
    except UnidentifiedImageError as exc:
        raise ImageError(f"not an image Pillow can read ({type(exc).__name__}); valid: PNG, JPEG, BMP, GIF, "
                         "TIFF, WebP, ..., an IDX file or a .npy array") from None
    except (OSError, ValueError, SyntaxError) as exc:  # truncated or corrupt image data
        raise ImageError(f"a damaged or unreadable image ({exc})") from None


def shrink(image: Any) -> Any:
    """A decoded image over twice MAX_SIDE -> reduced by a whole factor (box average) before any full-size
    conversion; 16-bit greys, which Image.reduce refuses, become mode F band by band."""
    from PIL import Image

    factor = max(image.size) // MAX_SIDE
    if factor < 2:
        return image
    if image.mode in ("P", "1"):
        image = image.convert("RGBA" if "transparency" in image.info else "L")
    if not image.mode.startswith("I;16"):
        return image.reduce(factor)
    w, h = image.width // factor, image.height // factor
    band = 64 * factor  # rows of the original per step: a few MB at a time
    rows = [np.asarray(image.crop((0, top, w * factor, min(top + band, h * factor))), dtype=np.float32)
            .reshape(-1, factor, w, factor).mean(axis=(1, 3)) for top in range(0, h * factor, band)]  # (b, w) each
    reduced = Image.fromarray(np.concatenate(rows), "F")
    reduced.info = dict(image.info)  # EXIF orientation, for greyscale
    return reduced


def prepare(image: Any, height: int, width: int, preprocess: bool = True) -> np.ndarray:
    """A PIL image -> (H, W) uint8: MNIST-style, or with preprocess False a plain resize."""
    from PIL import Image

    if not (image.width and image.height):
        raise ImageError(f"an image of {image.width}x{image.height} pixels; an image needs at least one row and "
                         f"one column")
    grey = greyscale(image)
    if not preprocess:
        return np.asarray(grey.resize((width, height), Image.Resampling.BILINEAR), dtype=np.uint8)
    if max(grey.size) > MAX_SIDE:
        scale = MAX_SIDE / max(grey.size)
        grey = grey.resize((max(1, round(grey.width * scale)), max(1, round(grey.height * scale))),
                           Image.Resampling.BOX)
    return mnist_style(np.asarray(grey, dtype=np.float32), height, width)


def greyscale(image: Any) -> Any:
    """Any mode -> mode L; transparent pixels count as white paper; EXIF rotation applied."""
    from PIL import Image, ImageOps

    image = ImageOps.exif_transpose(image)
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):  # 16/32-bit greys: scale the range to 0..255
        values = np.asarray(image, dtype=np.float32)
        if not np.isfinite(values).all():  # a float TIFF can hold them; they have no grey level
            raise ImageError("a floating-point image holding NaN or infinite values; give finite pixel values")
        top = 255.0 if values.max(initial=0) <= 255 else 65535.0 if values.max() <= 65535 else float(values.max())
        return Image.fromarray(np.clip(values * (255.0 / top), 0, 255).astype(np.uint8), "L")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("L")
    return image.convert("L")


def mnist_style(grey: np.ndarray, height: int = 28, width: int = 28) -> np.ndarray:
    """(h, w) float32 greys 0..255, any polarity -> (H, W) uint8, bright ink centred by mass."""
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    if np.median(border) > grey.mean():  # ink is the minority: it pulls the mean away from the paper
        grey, border = 255.0 - grey, 255.0 - border
    # the paper under the ink, from the image itself (uneven light), but never above the border's paper level
    paper = np.minimum(_background(grey), np.percentile(border, 90))
    ink = np.clip(grey - paper, 0, None)  # (h, w) >= 0
    strength = _strongest_mark(ink)
    if strength < MIN_CONTRAST:
        raise ImageError(f"a blank image: no ink found (the strongest mark differs from the paper by "
                         f"{strength:.0f} of 255, under {MIN_CONTRAST}); give an image with a drawn "
                         f"character, or use --no-preprocess")
    ink[ink < INK_THRESHOLD * ink.max()] = 0
    stroke = np.percentile(ink[ink > 0], 90)  # a typical stroke's level: strokes saturate, as in MNIST
    ink = np.clip(ink / stroke, 0, 1)
    top, bottom = _span(ink.sum(1))
    left, right = _span(ink.sum(0))
    crop = ink[top:bottom, left:right]  # (h', w') the ink's bounding box
    return _place(crop, height, width)


def _background(grey: np.ndarray) -> np.ndarray:
    """A smooth estimate of the paper's level at every pixel: strokes removed by a minimum filter, then blurred."""
    from PIL import Image, ImageFilter

    h, w = grey.shape
    scale = 64 / max(h, w)
    small = Image.fromarray(grey.astype(np.uint8), "L").resize(
        (max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BOX)
    smooth = small.filter(ImageFilter.MinFilter(7)).filter(ImageFilter.GaussianBlur(4))
    return np.asarray(smooth.resize((w, h), Image.Resampling.BILINEAR), dtype=np.float32)


def _strongest_mark(ink: np.ndarray) -> float:
    """The ink's peak after a slight blur: a stroke keeps its level, single noisy pixels (paper grain) do not."""
    from PIL import Image, ImageFilter

    blurred = Image.fromarray(np.clip(ink, 0, 255).astype(np.uint8), "L").filter(ImageFilter.GaussianBlur(1))
    return float(np.asarray(blurred).max(initial=0))


def _span(mass: np.ndarray) -> tuple[int, int]:
    """[start, stop) of the indices holding all but TRIM of the mass at each end."""
    cumulative = np.cumsum(mass) / mass.sum()
    start = int(np.searchsorted(cumulative, TRIM, side="right"))
    stop = int(np.searchsorted(cumulative, 1 - TRIM, side="left")) + 1
    return start, max(stop, start + 1)


def _place(crop: np.ndarray, height: int, width: int) -> np.ndarray:
    """Scale the ink's longer side to BOX of the frame, then put its centre of mass at the frame's centre."""
    from PIL import Image

    h, w = crop.shape
    box = max(1, round(BOX * min(height, width)))
    size = (max(1, round(w * box / max(h, w))), max(1, round(h * box / max(h, w))))  # (w'', h'')
    scaled = np.clip(np.asarray(Image.fromarray(crop.astype(np.float32), "F").resize(size, Image.Resampling.BILINEAR)),
                     0, 1)  # (h'', w'') antialiased
    total = scaled.sum()
    if total <= 0:
        raise ImageError("a blank image: no ink left after scaling")
    rows = np.arange(scaled.shape[0]) @ scaled.sum(1) / total  # centre of mass, in pixel indices
    cols = np.arange(scaled.shape[1]) @ scaled.sum(0) / total
    top = int(np.clip(round(height / 2 - 0.5 - rows), 0, height - scaled.shape[0]))
    left = int(np.clip(round(width / 2 - 0.5 - cols), 0, width - scaled.shape[1]))
    frame = np.zeros((height, width), np.float32)
    frame[top:top + scaled.shape[0], left:left + scaled.shape[1]] = scaled
    return np.rint(frame * 255).astype(np.uint8)
