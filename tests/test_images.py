"""Images in: orientation, colour modes, animations, size limits, and a clear error for every bad file."""

from __future__ import annotations

import subprocess
import sys
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
