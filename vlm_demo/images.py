"""Safe image loading: any photo a user brings becomes an RGB PIL image or a clear ImageError."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PIXELS = 64_000_000  # about 8000 x 8000; larger files are refused as possible decompression bombs


class ImageError(ValueError):
    """An image could not be read; the message says why in one line."""


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        low, high = float(array.min()), float(array.max())
        scaled = (array - low) / (high - low) * 255.0 if high > low else np.zeros_like(array)
        image = Image.fromarray(scaled.astype(np.uint8), mode="L")
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def open_image(source: str | Path | bytes | Image.Image, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open a path, raw bytes or PIL image as RGB with EXIF orientation applied (first frame only)."""
    name = "image" if isinstance(source, (bytes, Image.Image)) else str(source)
    if isinstance(source, Image.Image):
        image = source
    else:
        if isinstance(source, bytes):
            data = source
        else:
            path = Path(source)
            if not path.exists():
                raise ImageError(f"{name}: no such file")
            if path.is_dir():
                raise ImageError(f"{name}: is a folder, not an image")
            try:
                data = path.read_bytes()
            except OSError as error:
                raise ImageError(f"{name}: cannot be read ({error.strerror or error})") from None
        if not data:
            raise ImageError(f"{name}: the file is empty")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                Image.MAX_IMAGE_PIXELS = max_pixels
                image = Image.open(io.BytesIO(data))
        except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            if isinstance(error, UnidentifiedImageError):
                raise ImageError(f"{name}: not an image file Pillow can read") from None
            raise ImageError(f"{name}: too many pixels (limit {max_pixels:,})") from None
        except OSError as error:
            raise ImageError(f"{name}: cannot be decoded ({error})") from None
    width, height = image.size
    if width * height > max_pixels:
        raise ImageError(f"{name}: {width}x{height} is too many pixels (limit {max_pixels:,})")
    if width == 0 or height == 0:
        raise ImageError(f"{name}: the image has no pixels")
    try:
        if getattr(image, "is_animated", False):
            image.seek(0)
        image.load()
        image = ImageOps.exif_transpose(image) or image
        return _to_rgb(image)
    except (OSError, ValueError, SyntaxError) as error:
        raise ImageError(f"{name}: the file is truncated or damaged ({error})") from None
