"""Images in: orientation, colour modes, animations, size limits, and a clear error for every bad file."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.attacks import deflated_zeros, tiff_bytes
from vlm_demo.images import ImageError, open_image

ROOT = Path(__file__).resolve().parent.parent


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (40, 20), "red")
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif)
    assert open_image(path).size == (20, 40)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "CMYK", "L", "1", "I;16", "I", "F"])
def test_every_colour_mode_becomes_rgb(mode):
    image = Image.new(mode, (16, 12))
    loaded = open_image(image)
    assert loaded.mode == "RGB" and loaded.size == (16, 12)


def test_transparent_pixels_become_white():
    image = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert open_image(image).getpixel((0, 0)) == (255, 255, 255)


def test_sixteen_bit_png_keeps_its_contrast(tmp_path):
    ramp = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(ramp).save(path)
    pixels = np.asarray(open_image(path))
    assert pixels.min() == 0 and pixels.max() == 255


def test_animation_gives_its_first_frame(tmp_path):
    frames = [Image.new("RGB", (8, 8), colour) for colour in ("red", "blue", "green")]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50)
    assert open_image(path).getpixel((0, 0)) == (255, 0, 0)


def test_too_many_pixels_is_refused(tmp_path):
    path = tmp_path / "big.png"
    Image.new("L", (400, 300)).save(path)
    with pytest.raises(ImageError, match="too many pixels"):
        open_image(path, max_pixels=100_000)


def _bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    good = tmp_path / "good.png"
    Image.new("RGB", (64, 64), "blue").save(good)
    data = good.read_bytes()
    files = {
        "empty": (tmp_path / "empty.png", b""),
        "truncated": (tmp_path / "truncated.png", data[: len(data) // 2]),
        "not an image": (tmp_path / "notes.jpg", b"hello, this is text"),
    }
    for path, content in files.values():
        path.write_bytes(content)
    return {
        "empty": (files["empty"][0], "empty"),
        "truncated": (files["truncated"][0], "truncated or damaged"),
        "not an image": (files["not an image"][0], "not an image"),
        "missing": (tmp_path / "nowhere.png", "no such file"),
        "folder": (tmp_path, "is a folder"),
    }


@pytest.mark.parametrize("case", ["empty", "truncated", "not an image", "missing", "folder"])
def test_bad_file_gives_one_clear_error(tmp_path, case):
    path, message = _bad_files(tmp_path)[case]
    with pytest.raises(ImageError, match=message):
        open_image(path)


@pytest.mark.parametrize("case", ["empty", "truncated", "not an image", "missing"])
def test_cli_reports_bad_file_in_one_line_with_exit_status_2(tmp_path, case):
    path, message = _bad_files(tmp_path)[case]
    result = subprocess.run([sys.executable, "-m", "vlm_demo", "caption", str(path)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [f"error: {path}: {lines[0].split(': ', 2)[2]}"]
    assert message in lines[0] and "Traceback" not in result.stderr


PEAK = """
import sys
from vlm_demo.images import ImageError, open_image

def kb(key):
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(key))

with open("/proc/self/clear_refs", "w") as refs:
    refs.write("5")  # restart the peak (VmHWM) from here
start = kb("VmRSS")
try:
    open_image(sys.argv[1])
    outcome = "opened"
except ImageError as error:
    outcome = str(error)
print((kb("VmHWM") - start) / 1024, outcome)
"""


def _peak_mb(path: Path) -> tuple[float, str]:
    """Peak memory (MB above the start) of opening `path` in a fresh process, and what happened."""
    result = subprocess.run([sys.executable, "-c", PEAK, str(path)], cwd=ROOT, capture_output=True, text=True,
                            timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    peak, outcome = result.stdout.strip().split(" ", 1)
    return float(peak), outcome


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux's peak-RSS reset")
def test_sixteen_bit_bomb_is_refused_before_decoding_and_a_deep_image_at_the_cap_stays_small(tmp_path):
    bomb = tmp_path / "bomb.png"  # the file: 124 KB, 7999 x 7999 at 16 bits (1.35 GB before the fix)
    Image.new("I;16", (7999, 7999)).save(bomb)
    peak, outcome = _peak_mb(bomb)
    assert "too many pixels" in outcome and peak < 20, (peak, outcome)
    deep = tmp_path / "deep.png"  # 16 M pixels at 16 bits, just under the cap (353 MB before the fix)
    ramp = (np.arange(4000 * 4000, dtype=np.uint32) % 65536).astype(np.uint16).reshape(4000, 4000)
    Image.fromarray(ramp).save(deep)
    del ramp
    peak, outcome = _peak_mb(deep)
    assert outcome == "opened" and peak < 160, peak


def test_formats_the_app_does_not_take_are_never_parsed(tmp_path):
    eps = tmp_path / "drawing.jpg"  # EPS would run Ghostscript where it is installed
    eps.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n0 0 moveto 8 8 lineto stroke\n%%EOF\n")
    Image.new("RGB", (8, 8)).save(tmp_path / "picture.tga")
    for path in (eps, tmp_path / "picture.tga"):
        with pytest.raises(ImageError, match="not an image in a format this app reads"):
            open_image(path)
    Image.new("RGB", (8, 8)).save(tmp_path / "picture.tif")
    assert open_image(tmp_path / "picture.tif").size == (8, 8)


def test_devices_pipes_and_oversized_files_are_refused_without_reading(tmp_path):
    with pytest.raises(ImageError, match="not a regular file"):
        open_image("/dev/zero")
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    outcome: list = []
    reader = threading.Thread(target=lambda: outcome.append(pytest.raises(ImageError, open_image, fifo)), daemon=True)
    reader.start()
    reader.join(timeout=5)
    assert outcome and "not a regular file" in str(outcome[0].value)
    big = tmp_path / "big.png"
    with big.open("wb") as handle:
        handle.truncate(26 * 2**20)  # sparse: no disk used
    with pytest.raises(ImageError, match="too large"):
        open_image(big)


def test_long_thin_images_are_refused_from_the_header_and_twenty_to_one_still_opens(tmp_path):
    for size in [(5000, 1), (1, 5000), (421, 20)]:
        path = tmp_path / f"thin-{size[0]}x{size[1]}.png"
        Image.new("RGB", size).save(path)
        with pytest.raises(ImageError, match=rf"{size[0]}x{size[1]} is too long and thin \(aspect ratio limit 20:1\)"):
            open_image(path)
    with pytest.raises(ImageError, match="too long and thin"):
        open_image(Image.new("RGB", (300, 10)))
    assert open_image(Image.new("RGB", (400, 20))).size == (400, 20)
    assert open_image(Image.new("RGB", (1, 20))).size == (1, 20)


PREPROCESS_PEAK = """
import sys
import torch
from PIL import Image
from vlm_demo.encoders.base import VisionEncoder
from vlm_demo.images import ImageError, open_image

class Encoder(VisionEncoder):
    embed_dim = num_tokens = 1
    def encode(self, pixels): ...

def kb(key):
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(key))

raw = Image.open(sys.argv[1]).convert("RGB") if sys.argv[2] == "raw" else None  # skips open_image's checks
with open("/proc/self/clear_refs", "w") as refs:
    refs.write("5")
start = kb("VmRSS")
try:
    pixels = Encoder().preprocess([raw or open_image(sys.argv[1])])
    outcome = f"preprocessed {tuple(pixels.shape)}"
except ImageError as error:
    outcome = str(error)
print((kb("VmHWM") - start) / 1024, outcome)
"""


def _preprocess_peak_mb(path: Path, raw: bool) -> tuple[float, str]:
    """Peak memory (MB) of turning `path` into encoder pixels in a fresh process (`raw`: without open_image)."""
    result = subprocess.run([sys.executable, "-c", PREPROCESS_PEAK, str(path), "raw" if raw else "checked"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    peak, outcome = result.stdout.strip().split(" ", 1)
    return float(peak), outcome


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux's peak-RSS reset")
def test_a_tiny_long_thin_png_costs_little_memory_whether_refused_or_preprocessed(tmp_path):
    thin = tmp_path / "thin.png"  # 110 bytes; scaled to 224 px tall before cropping it took 1.9 GB
    Image.new("RGB", (10_000, 1), "red").save(thin)
    peak, outcome = _preprocess_peak_mb(thin, raw=False)
    assert "10000x1 is too long and thin" in outcome and peak < 150, (peak, outcome)
    peak, outcome = _preprocess_peak_mb(thin, raw=True)
    assert outcome == "preprocessed (1, 3, 224, 224)" and peak < 150, (peak, outcome)


def _resize_then_crop(image: Image.Image, size: int) -> Image.Image:
    """The encoders' preprocessing as it was: the short side scaled to `size`, then the centre cropped."""
    width, height = image.size
    scale = size / min(width, height)
    resized = image.resize((max(size, round(width * scale)), max(size, round(height * scale))), Image.BICUBIC)
    left, top = (resized.width - size) // 2, (resized.height - size) // 2
    return resized.crop((left, top, left + size, top + size))


def test_center_crop_gives_the_same_pixels_as_resizing_then_cropping():
    from vlm_demo.encoders.base import resize_center_crop

    photo = open_image(ROOT / "assets" / "examples" / "chelsea.jpg")
    cases = [photo, photo.rotate(90, expand=True), photo.crop((0, 0, 301, 97)), photo.crop((50, 20, 90, 150)),
             photo.crop((0, 0, 224, 300)), photo.resize((224, 224))]
    for image in cases:
        for size in (224, 192, 518):
            ours = np.asarray(resize_center_crop(image, size), dtype=np.int16)
            reference = np.asarray(_resize_then_crop(image, size), dtype=np.int16)
            assert ours.shape == (size, size, 3) and np.abs(ours - reference).max() <= 1, (image.size, size)


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux's peak-RSS reset")
def test_tiff_whose_tile_dwarfs_the_image_is_refused_before_decoding(tmp_path):
    bomb = tmp_path / "tile-bomb.tif"  # 16x16 pixels in one 16384x16384 deflate tile: libtiff fills all 805 MB
    bomb.write_bytes(tiff_bytes((16, 16), deflated_zeros(16384 * 3 * 256, 64), tile=16384, compression=8))
    assert bomb.stat().st_size < 1_000_000
    peak, outcome = _peak_mb(bomb)
    assert outcome == f"{bomb}: the TIFF tile 16384x16384 is larger than the 16x16 image" and peak < 20, \
        (peak, outcome)


def test_tiff_tiles_padded_to_sixteen_and_whole_image_strips_still_open(tmp_path):
    padded = tmp_path / "padded.tif"  # 20x17 in one 32x32 tile, as libtiff writes it
    padded.write_bytes(tiff_bytes((20, 17), zlib.compress(bytes(32 * 32 * 3)), tile=32, compression=8))
    assert open_image(padded).size == (20, 17)
    strip = tmp_path / "strip.tif"  # RowsPerStrip 2**32 - 1 is the TIFF default: "the whole image is one strip"
    strip.write_bytes(tiff_bytes((20, 17), bytes(20 * 17 * 3), rows_per_strip=2**32 - 1))
    assert open_image(strip).size == (20, 17)
    with pytest.raises(ImageError, match=r"the TIFF tile 32x32 is too many pixels \(limit 340\)"):
        open_image(padded, max_pixels=20 * 17)
    wide = tmp_path / "wide-tile.tif"
    wide.write_bytes(tiff_bytes((20, 17), zlib.compress(bytes(48 * 48 * 3)), tile=48, compression=8))
    with pytest.raises(ImageError, match=r"TIFF tile 48x48 is larger than the 20x17 image"):
        open_image(wide)
