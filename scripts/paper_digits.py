"""Digits that look like paper, not like MNIST: a test set for `seqclf predict`, and its scorer.

`make OUT`: renders each digit 0-9 in every font found below (Debian's fonts-dejavu, -liberation,
-freefont-ttf, -urw-base35, -comic-neue, -linuxlibertine; the chancery Z003 and Comic Neue are
the most hand-like) as dark ink (grey, blue-black or brown) on light paper, with: uneven light
(a linear gradient across the page), paper grain (Gaussian noise), a slight blur, a random
rotation (+-8 degrees), a random text size (a quarter to two thirds of the page) and an off-centre
position, on pages of 60-400 pixels. Saved as PNG or JPEG (quality 50-90). File names start
with the digit: `7-urw-gothic-1.jpg`. Seeded: the same set on every run.

`handwritten OUT`: the same pages and ink, but each carrying one of the 300 real handwritten
digits that scripts/digits_to_idx.py holds out of training (UCI, via scikit-learn), redrawn
from its 8x8 scan as a smooth pen stroke. File names: `7-uci-12.png`.

`score PREDICTIONS.json`: accuracy of `seqclf predict ... --json` output against the names.

    sudo apt-get install fonts-liberation fonts-freefont-ttf fonts-urw-base35 fonts-comic-neue
    python scripts/paper_digits.py make paper-digits
    seqclf predict runs/<run>/best.pt paper-digits --json > p.json; python scripts/paper_digits.py score p.json
    python scripts/paper_digits.py handwritten paper-handwriting   # needs scikit-learn
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

FAMILIES = ["DejaVu Sans", "DejaVu Serif", "DejaVu Sans Mono", "Liberation Sans", "Liberation Serif",
            "Liberation Mono", "FreeSans", "FreeSerif", "Nimbus Sans", "Nimbus Roman", "URW Gothic", "URW Bookman",
            "C059", "P052", "Z003", "Comic Neue", "Linux Libertine O", "Linux Biolinum O"]
INKS = [(30, 30, 30), (20, 30, 90), (70, 45, 30), (60, 60, 60)]


def font_files() -> dict[str, str]:
    """family -> its regular font file, for the families fontconfig really has (fc-match falls back otherwise)."""
    found = {}
    for family in FAMILIES:
        line = subprocess.run(["fc-match", "-f", "%{family}|%{file}", family], capture_output=True, text=True,
                              check=False).stdout
        name, _, path = line.partition("|")
        if family.split()[0].lower() in name.lower() and path:
            found[family] = path
    return found


def page_size(rng: np.random.Generator) -> tuple[int, int, int]:
    """(width, height) of a page and the size of the character on it."""
    side = int(rng.integers(60, 400))
    width, height = side, int(side * rng.uniform(0.8, 1.3))
    return width, height, int(min(width, height) * rng.uniform(0.25, 0.67))


def render(digit: int, font_path: str, rng: np.random.Generator) -> Image.Image:
    width, height, size = page_size(rng)
    font = ImageFont.truetype(font_path, size)
    glyph = Image.new("L", (size * 2, size * 2), 0)
    ImageDraw.Draw(glyph).text((size // 2, size // 4), str(digit), fill=255, font=font)
    return on_paper(glyph, width, height, rng)


def handwritten(digit: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """A UCI digit ((8, 8) values 0..16, scanned handwriting) redrawn as a pen stroke on a page."""
    width, height, size = page_size(rng)
    smooth = np.asarray(Image.fromarray(digit.astype(np.float32), "F").resize((size, size), Image.Resampling.BICUBIC))
    stroke = np.clip(smooth / 16 * 1.6 - 0.3, 0, 1)  # the scan's soft grey edges become a pen's line
    glyph = Image.new("L", (size * 2, size * 2), 0)
    glyph.paste(Image.fromarray((stroke * 255).astype(np.uint8), "L"), (size // 2, size // 2))
    return on_paper(glyph, width, height, rng)


def on_paper(glyph: Image.Image, width: int, height: int, rng: np.random.Generator) -> Image.Image:
    """Ink coverage (L, 255 = ink) turned a little and put somewhere on an unevenly lit, grainy page."""
    glyph = glyph.rotate(float(rng.uniform(-8, 8)), resample=Image.Resampling.BILINEAR)
    glyph = glyph.crop(glyph.getbbox())
    # off-centre: anywhere the glyph fits on the page
    x = int(rng.integers(0, max(1, width - glyph.width)))
    y = int(rng.integers(0, max(1, height - glyph.height)))
    coverage = np.zeros((height, width), np.float32)
    box = coverage[y:y + glyph.height, x:x + glyph.width]
    box[...] = np.asarray(glyph, np.float32)[:box.shape[0], :box.shape[1]] / 255
    # paper: light, lit unevenly from one side, with grain
    light = np.linspace(rng.uniform(0.7, 0.9), 1.0, width)[None, :] if rng.random() < 0.5 else \
        np.linspace(rng.uniform(0.7, 0.9), 1.0, height)[:, None]
    paper = np.array([rng.uniform(225, 250), rng.uniform(220, 245), rng.uniform(200, 235)], np.float32)
    ink = np.array(INKS[int(rng.integers(len(INKS)))], np.float32)
    shading = np.broadcast_to(light, (height, width))[..., None]  # (H, W, 1)
    page = (paper * (1 - coverage[..., None]) + ink * coverage[..., None]) * shading  # (H, W, 3)
    page += rng.normal(0, rng.uniform(2, 9), page.shape)
    image = Image.fromarray(np.clip(page, 0, 255).astype(np.uint8), "RGB")
    return image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0, 1.2))))


def make(output: Path, per_font: int, seed: int) -> None:
    fonts = font_files()
    rng = np.random.default_rng(seed)
    output.mkdir(parents=True, exist_ok=True)
    count = 0
    for family, path in fonts.items():
        slug = family.lower().replace(" ", "-")
        for digit in range(10):
            for k in range(per_font):
                image = render(digit, path, rng)
                if rng.random() < 0.5:
                    image.save(output / f"{digit}-{slug}-{k}.jpg", quality=int(rng.integers(50, 90)))
                else:
                    image.save(output / f"{digit}-{slug}-{k}.png")
                count += 1
    print(f"{count} images of {len(fonts)} fonts in {output}: {', '.join(fonts)}")


def make_handwritten(output: Path, seed: int) -> None:
    """The 300 UCI digits scripts/digits_to_idx.py holds out of training, each on its own page."""
    from digits_to_idx import held_out

    rng = np.random.default_rng(seed)
    output.mkdir(parents=True, exist_ok=True)
    images, labels = held_out()
    for i, (digit, label) in enumerate(zip(images, labels)):
        page = handwritten(digit, rng)
        if rng.random() < 0.5:
            page.save(output / f"{label}-uci-{i}.jpg", quality=int(rng.integers(50, 90)))
        else:
            page.save(output / f"{label}-uci-{i}.png")
    print(f"{len(labels)} handwritten digits in {output}")


def score(predictions: Path) -> None:
    records = json.loads(predictions.read_text())["predictions"]
    right = [Path(r["input"]).name.split("-")[0] == r["predicted_class"] for r in records]
    print(f"{sum(right)} of {len(right)} right: accuracy {sum(right) / max(len(right), 1):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    made = commands.add_parser("make")
    made.add_argument("output", type=Path)
    made.add_argument("--per-font", type=int, default=2, help="images of each digit in each font")
    made.add_argument("--seed", type=int, default=0)
    hand = commands.add_parser("handwritten")
    hand.add_argument("output", type=Path)
    hand.add_argument("--seed", type=int, default=0)
    scored = commands.add_parser("score")
    scored.add_argument("predictions", type=Path)
    args = parser.parse_args()
    if args.command == "make":
        make(args.output, args.per_font, args.seed)
    elif args.command == "handwritten":
        make_handwritten(args.output, args.seed)
    else:
        score(args.predictions)


if __name__ == "__main__":
    main()
