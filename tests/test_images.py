"""Images in: orientation, colour modes, animations, size limits, and a clear error for every bad file."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

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
