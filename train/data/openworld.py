"""Open-world training images available offline: labelled drawings from Debian (Noto Color Emoji glyphs, Open Clip
Art PNGs) captioned by the encoder's head; the everyday photos (evaluation only) live in train/data/photos.py."""

from __future__ import annotations

import colorsys
import random
import unicodedata
import warnings
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont

from train.data.base import Sample
from train.data.classify import _split_indices
from train.data.photos import NAME_PROMPT, PHOTOS, photos_samples

EMOJI_FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")  # Debian: fonts-noto-color-emoji
CLIPART_ROOT = Path("/usr/share/openclipart/png")  # Debian: openclipart-png
BACKDROPS = ("plain", "scene")  # what drawings are placed on: a plain light colour, or a photo-like field
__all__ = ["NAME_PROMPT", "PHOTOS", "clipart_samples", "emoji_samples", "photos_samples", "place", "scene"]
HEAD_CAPTION = "class_head"  # meta["caption_from"]: the target is written from the encoder's own classifier


def _background(rng: random.Random) -> tuple[int, int, int]:
    """A light or mid-tone plain background, as drawings are usually shown."""
    base = rng.randint(150, 255)
    return tuple(max(0, min(255, base + rng.randint(-40, 40))) for _ in range(3))  # type: ignore[return-value]


def check_backdrop(backdrop: str) -> None:
    if backdrop not in BACKDROPS:
        raise ValueError(f"backdrop must be one of {', '.join(BACKDROPS)}, got {backdrop!r}")


def scene(rng: random.Random, size: int = 224) -> Image.Image:
    """A photo-like backdrop: a coarse field of muted colours around one base colour, upsampled smooth (like
    out-of-focus surroundings), with sensor-like grain, so a drawing on it looks less like a sticker on paper."""
    cells = rng.randint(2, 5)
    hue, saturation, value = rng.random(), rng.uniform(0.05, 0.5), rng.uniform(0.25, 0.9)
    colours = [colorsys.hsv_to_rgb((hue + rng.uniform(-0.08, 0.08)) % 1, min(1, saturation * rng.uniform(0.5, 1.5)),
                                   min(1, value * rng.uniform(0.7, 1.3))) for _ in range(cells * cells)]
    field = Image.new("RGB", (cells, cells))
    field.putdata([tuple(round(channel * 255) for channel in colour) for colour in colours])
    backdrop = field.resize((size, size), Image.BICUBIC)
    grain = np.random.default_rng(rng.getrandbits(32)).normal(0, rng.uniform(2, 10), (size, size, 1))
    pixels = np.asarray(backdrop, dtype=np.float32) + grain
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8))


def place(drawing: Image.Image, rng: random.Random, size: int = 224, backdrop: str = "plain") -> Image.Image:
    """An RGBA drawing at a random spot of the canvas (augmentation): on a plain light background scaled to 45-90% of
    it, or (backdrop "scene") on a photo-like one scaled to 60-120% (a large subject may run off the edges), with
    random brightness, contrast and blur."""
    check_backdrop(backdrop)
    drawing = drawing.convert("RGBA")
    box = drawing.getbbox()
    if box:
        drawing = drawing.crop(box)
    if rng.random() < 0.5:
        drawing = drawing.transpose(Image.FLIP_LEFT_RIGHT)
    photo_like = backdrop == "scene"
    scale = rng.uniform(*((0.6, 1.2) if photo_like else (0.45, 0.9))) * size / max(drawing.size)
    drawing = drawing.resize((max(1, round(drawing.width * scale)), max(1, round(drawing.height * scale))),
                             Image.LANCZOS)
    canvas = (scene(rng, size) if photo_like else Image.new("RGB", (size, size), _background(rng))).convert("RGBA")
    left, top = (rng.randint(min(0, size - side), max(0, size - side)) for side in drawing.size)
    canvas.alpha_composite(drawing, (max(0, left), max(0, top)), (max(0, -left), max(0, -top)))
    picture = canvas.convert("RGB")
    if photo_like:
        picture = ImageEnhance.Brightness(picture).enhance(rng.uniform(0.7, 1.2))
        picture = ImageEnhance.Contrast(picture).enhance(rng.uniform(0.7, 1.2))
        picture = picture.filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.2)))
    return picture


@cache
def emoji_glyphs() -> tuple[tuple[int, str], ...]:
    """(code point, Unicode name) of every single-code-point glyph in Noto Color Emoji."""
    from fontTools.ttLib import TTFont

    with TTFont(str(EMOJI_FONT), lazy=True) as font:
        points = sorted(font.getBestCmap())
    return tuple((point, unicodedata.name(chr(point)).lower()) for point in points
                 if point > 0x2000 and unicodedata.name(chr(point), ""))


def _render_emoji(point: int) -> Image.Image:
    font = ImageFont.truetype(str(EMOJI_FONT), 109)  # the only size this bitmap font has
    canvas = Image.new("RGBA", (160, 160), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text((10, 10), chr(point), font=font, embedded_color=True)
    return canvas


def _drawings(split: str, count: int | None, variants: int, seed: int, prefix: str,
              items: list[tuple[str, str]], render, backdrop: str) -> list[Sample]:
    """`variants` augmented placements of each drawing in the split; captions come from the encoder's head."""
    check_backdrop(backdrop)
    if backdrop != "plain":
        prefix = f"{prefix}-{backdrop}"
    samples = []
    for index in _split_indices(len(items), split, seed=0):
        key, name = items[index]
        for variant in range(variants):
            def load(key=key, variant=variant) -> Image.Image:
                return place(render(key), random.Random(f"{seed}-{prefix}-{key}-{variant}"), backdrop=backdrop)

            samples.append(Sample(f"{prefix}-{seed}-{key}-{variant}", load, NAME_PROMPT, "", "caption",
                                  qtype=prefix, meta={"caption_from": HEAD_CAPTION, "name": name}))
        if count and len(samples) >= count:
            return samples[:count]
    return samples


def emoji_samples(split: str, count: int | None = None, variants: int = 1, seed: int = 0,
                  backdrop: str = "plain") -> list[Sample]:
    """Noto Color Emoji glyphs placed on plain or photo-like backdrops (Debian fonts-noto-color-emoji, SIL OFL
    1.1)."""
    if not EMOJI_FONT.is_file():
        raise FileNotFoundError(f"{EMOJI_FONT} is missing: install Debian's fonts-noto-color-emoji (make data)")
    items = [(str(point), name) for point, name in emoji_glyphs()]
    return _drawings(split, count, variants, seed, "emoji", items, lambda key: _render_emoji(int(key)),
                     backdrop)


MAX_DRAWING_PIXELS = 25_000_000  # a few Open Clip Art PNGs are hundreds of megapixels: skipped


def _small_enough(path: Path) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:  # reads the header only
                return image.width * image.height <= MAX_DRAWING_PIXELS
    except (OSError, Image.DecompressionBombError):
        return False


@cache
def clipart_files() -> tuple[Path, ...]:
    """Every Open Clip Art PNG that opens and is at most MAX_DRAWING_PIXELS."""
    return tuple(path for path in sorted(CLIPART_ROOT.rglob("*.png")) if _small_enough(path))


def clipart_samples(split: str, count: int | None = None, variants: int = 1, seed: int = 0,
                    backdrop: str = "plain") -> list[Sample]:
    """Open Clip Art PNGs on plain or photo-like backdrops (Debian openclipart-png, public domain)."""
    if not CLIPART_ROOT.is_dir():
        raise FileNotFoundError(f"{CLIPART_ROOT} is missing: install Debian's openclipart-png (make data)")
    items = [(path.relative_to(CLIPART_ROOT).as_posix(), path.relative_to(CLIPART_ROOT).with_suffix("").as_posix())
             for path in clipart_files()]
    return _drawings(split, count, variants, seed, "clipart", items,
                     lambda key: Image.open(CLIPART_ROOT / key), backdrop)
