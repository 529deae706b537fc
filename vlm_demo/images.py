"""Safe image loading: any photo a user brings becomes an RGB PIL image or a clear ImageError, in bounded memory."""

from __future__ import annotations

import io
import os
import stat
import unicodedata
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PIXELS = 16_000_000  # 4000 x 4000: plenty for encoders that look at 224 px; more is refused before decoding
MAX_ASPECT = 20  # longest side over shortest: a 5000x1 strip is not a photo, and cropping it for an encoder is waste
MAX_FILE_BYTES = 25 * 2**20  # also the app's upload limit (launch's max_file_size)
# The formats the app and the CLI accept; EPS, PSD, etc. are never parsed.
FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF")
READABLE = "JPEG, PNG, GIF, BMP, WebP or TIFF"
SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"})
_TIFF_TILE = 16  # TIFF tile sides are multiples of 16, so a tile may pad the image up to the next one
_UNPRINTABLE = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})  # controls, bidi/format marks, surrogates, line breaks
_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_ROWS = 256  # deep images are scaled to 8 bits this many rows at a time (float32), never as one float copy


class ImageError(ValueError):
    """An image could not be read; the message says why in one line."""


def _escape(char: str) -> str:
    code = ord(char)
    if char in _NAMED_ESCAPES:
        return _NAMED_ESCAPES[char]
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8, kept by the file system's surrogateescape
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def printable_name(name: str | bytes | os.PathLike) -> str:
    """A file name (or any text) safe for one line of a terminal or of UTF-8 JSON.

    Bytes that are not UTF-8 become \\xNN; newlines, tabs, ESC and other C0/C1 controls, bidi and other
    format marks and line separators become \\n, \\t, \\xNN or \\uNNNN. Backslashes are left alone, so
    the result is for showing, not for turning back into the name."""
    text = os.fsdecode(name)
    if text.isprintable():
        return text
    return "".join(_escape(char) if unicodedata.category(char) in _UNPRINTABLE else char for char in text)


def _deep_to_l(image: Image.Image) -> Image.Image:
    """A 16/32-bit or float image stretched to its own min..max as 8-bit grey, one band of rows at a time."""
    array = np.asarray(image)
    low, high = float(array.min()), float(array.max())
    scale = 255.0 / (high - low) if high > low and np.isfinite(high - low) else 0.0
    out = np.empty(array.shape, dtype=np.uint8)
    for start in range(0, array.shape[0], _ROWS):
        rows = array[start:start + _ROWS].astype(np.float32)
        out[start:start + _ROWS] = np.nan_to_num((rows - low) * scale).clip(0, 255)
    return Image.fromarray(out, mode="L")


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        image = _deep_to_l(image)
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def read_file(path: Path, name: str, limit: int = MAX_FILE_BYTES) -> bytes:
    """A regular file's bytes, at most `limit` of them: devices, FIFOs and folders are refused without reading."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ImageError(f"{name}: no such file") from None
    except OSError as error:
        raise ImageError(f"{name}: cannot be read ({error.strerror or error})") from None
    if stat.S_ISDIR(info.st_mode):
        raise ImageError(f"{name}: is a folder, not an image")
    if not stat.S_ISREG(info.st_mode):
        raise ImageError(f"{name}: not a regular file (a device, pipe or socket)")
    if info.st_size > limit:
        raise ImageError(f"{name}: the file is too large ({info.st_size / 2**20:.1f} MB, limit {limit / 2**20:.0f} MB)")
    try:
        with path.open("rb") as handle:
            data = handle.read(limit + 1)
    except OSError as error:
        raise ImageError(f"{name}: cannot be read ({error.strerror or error})") from None
    if len(data) > limit:  # it grew after stat
        raise ImageError(f"{name}: the file is too large (limit {limit / 2**20:.0f} MB)")
    return data


def _decode(data: bytes, name: str) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own, lower, limit follows
            return Image.open(io.BytesIO(data), formats=FORMATS)
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image in a format this app reads ({READABLE})") from None
    except Image.DecompressionBombError:
        raise ImageError(f"{name}: too many pixels (limit {MAX_PIXELS:,})") from None
    except (OSError, ValueError, SyntaxError) as error:
        raise ImageError(f"{name}: cannot be decoded ({error})") from None


def _check_tiff_tiles(image: Image.Image, name: str, max_pixels: int) -> None:
    """libtiff allocates and fills a whole tile, however small the image: a tile must fit the image (padded to 16)."""
    tags = getattr(image, "tag_v2", {})
    if image.format != "TIFF" or (322 not in tags and 323 not in tags):
        return
    width, height = image.size
    tile_width, tile_height = tags.get(322, width), tags.get(323, height)
    if not isinstance(tile_width, int) or not isinstance(tile_height, int):
        raise ImageError(f"{name}: cannot be decoded (invalid TIFF tile size)")
    if tile_width > -(-width // _TIFF_TILE) * _TIFF_TILE or tile_height > -(-height // _TIFF_TILE) * _TIFF_TILE:
        raise ImageError(f"{name}: the TIFF tile {tile_width}x{tile_height} is larger than the {width}x{height} image")
    if tile_width * tile_height > max_pixels:
        raise ImageError(f"{name}: the TIFF tile {tile_width}x{tile_height} is too many pixels (limit {max_pixels:,})")


def _check_size(image: Image.Image, name: str, max_pixels: int) -> None:
    """Refuse from the header alone: too many pixels, none, or too long and thin for a centre crop."""
    width, height = image.size
    if width * height > max_pixels:
        raise ImageError(f"{name}: {width}x{height} is too many pixels (limit {max_pixels:,})")
    if width == 0 or height == 0:
        raise ImageError(f"{name}: the image has no pixels")
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise ImageError(f"{name}: {width}x{height} is too long and thin (aspect ratio limit {MAX_ASPECT}:1)")
    _check_tiff_tiles(image, name, max_pixels)


def open_image(source: str | Path | bytes | Image.Image, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open a path, raw bytes or PIL image as RGB with EXIF orientation applied (first frame only).

    The pixel count, the aspect ratio and TIFF tile sizes are checked from the header before any pixel is
    decoded. Messages name a path through `printable_name`."""
    name = "image" if isinstance(source, (bytes, Image.Image)) else printable_name(source)
    if isinstance(source, Image.Image):
        image = source
    else:
        data = source if isinstance(source, bytes) else read_file(Path(source), name)
        if not data:
            raise ImageError(f"{name}: the file is empty")
        image = _decode(data, name)
    _check_size(image, name, max_pixels)
    try:
        if getattr(image, "is_animated", False):
            image.seek(0)
        image.load()
        image = ImageOps.exif_transpose(image) or image
        return _to_rgb(image)
    except (OSError, ValueError, SyntaxError) as error:
        raise ImageError(f"{name}: the file is truncated or damaged ({error})") from None
