"""The command line: `list` shows every component and its availability; bad arguments fail clearly."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from vlm_demo.adapters import ADAPTERS
from vlm_demo.combos import COMBOS
from vlm_demo.encoders import ENCODERS
from vlm_demo.llms import LLMS

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vlm_demo", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def test_list_names_every_component_with_its_availability():
    result = _run("list")
    assert result.returncode == 0, result.stderr
    for name in [*ENCODERS, *ADAPTERS, *LLMS, *(c for c in COMBOS if c != "default")]:
        assert f"  {name} " in result.stdout, name
    assert re.search(r"\n  efficientnet-lite0 +available \(packaged\)", result.stdout)
    assert "needs hub download" in result.stdout  # hub encoders are listed but not downloaded
    assert "(default)" in result.stdout


def test_unknown_combination_is_one_clear_error(tmp_path):
    from PIL import Image

    Image.new("RGB", (32, 32)).save(tmp_path / "x.png")
    result = _run("caption", str(tmp_path / "x.png"), "--combo", "nope")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: unknown combination 'nope'")


def test_checkpoint_that_is_not_an_adapter_is_refused(tmp_path):
    from PIL import Image

    Image.new("RGB", (32, 32)).save(tmp_path / "x.png")
    result = _run("caption", str(tmp_path / "x.png"), "--checkpoint", str(tmp_path))
    assert result.returncode == 2 and "no config.json" in result.stderr and "Traceback" not in result.stderr



def test_out_of_range_options_are_one_line_errors_before_any_model_loads(tmp_path, monkeypatch, capsys):
    from PIL import Image

    from vlm_demo import cli

    Image.new("RGB", (32, 32)).save(tmp_path / "x.png")
    monkeypatch.setattr(cli, "load_vlm", lambda *_: pytest.fail("model loaded for a user error"))
    for option, value, words in [("--temperature", "-1", "temperature must be 0 (greedy) or from 0.01 to 2"),
                                 ("--top-p", "5", "top-p must be in (0, 1]"),
                                 ("--max-new-tokens", "0", "max new tokens must be at least 1"),
                                 ("--batch-size", "0", "--batch-size must be at least 1"),
                                 ("--batch-size", "-1", "--batch-size must be at least 1"),
                                 ("--temperature", "1e-300", "temperature must be 0 (greedy) or from 0.01 to 2"),
                                 ("--seed", "-1", "the seed must be a whole number from 0 to"),
                                 ("--seed", str(2**70), "the seed must be a whole number from 0 to")]:
        assert cli.main(["caption", str(tmp_path / "x.png"), option, value]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {words}"), (option, lines)


def test_devices_and_pipes_are_refused_in_one_line_without_loading_a_model(tmp_path, monkeypatch, capsys):
    import os
    import threading

    from vlm_demo import cli

    monkeypatch.setattr(cli, "load_vlm", lambda *_: pytest.fail("model loaded for a user error"))
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    for path in ("/dev/zero", str(fifo)):
        codes: list[int] = []
        runner = threading.Thread(target=lambda p=path, c=codes: c.append(cli.main(["caption", p])), daemon=True)
        runner.start()
        runner.join(timeout=10)
        assert codes == [2], path
        lines = capsys.readouterr().err.strip().splitlines()
        assert lines == [f"error: {path}: not a regular file (a device, pipe or socket)"]


def test_a_combination_that_needs_an_unreachable_hub_fails_in_one_line(tmp_path):
    import os

    from PIL import Image

    Image.new("RGB", (32, 32)).save(tmp_path / "x.png")
    hub = next(name for name, combo in COMBOS.items() if combo.availability().startswith("needs hub"))
    result = subprocess.run([sys.executable, "-m", "vlm_demo", "caption", str(tmp_path / "x.png"), "--combo", hub],
                            cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.stderr


WEIRD_NAMES = {b"bad\xff.png": "bad\\xff.png", b"new\nline.png": "new\\nline.png",
               b"\x1b[31mred.png": "\\x1b[31mred.png", b"rtl\xe2\x80\xaegnp.png": "rtl\\u202egnp.png"}


def test_weird_file_names_are_escaped_in_one_line_errors(tmp_path):
    import os

    folder = os.fsencode(tmp_path)
    for name in WEIRD_NAMES:
        with open(os.path.join(folder, name), "wb") as handle:
            handle.write(b"not an image")
    paths = [os.path.join(folder, name) for name in WEIRD_NAMES]
    result = subprocess.run([sys.executable, "-m", "vlm_demo", "caption", "--quiet", *paths], cwd=ROOT,
                            capture_output=True, timeout=120, env={**os.environ, "LC_ALL": "C.UTF-8"})
    stderr = result.stderr.decode("utf-8")  # strict: every byte is UTF-8
    assert result.returncode == 2 and "\x1b" not in stderr and "\u202e" not in stderr, stderr
    assert stderr.splitlines() == [f"error: {tmp_path}/{shown}: not an image in a format this app reads "
                                   f"(JPEG, PNG, GIF, BMP, WebP or TIFF)" for shown in WEIRD_NAMES.values()]


class _FakeVLM:
    name, trained = "fake\x1b[2J", True

    def caption(self, images, prompt, settings):
        return ["a cat"] * len(images)

    def image_tokens(self, images):
        return [None] * len(images)


def test_captions_and_json_records_show_weird_names_escaped_in_valid_utf8(tmp_path, monkeypatch, capsys):
    import json
    import os

    from PIL import Image

    from vlm_demo import cli

    for name in WEIRD_NAMES:
        Image.new("RGB", (8, 8)).save(os.path.join(os.fsencode(tmp_path), name), format="PNG")
    monkeypatch.setattr(cli, "load_vlm", lambda *_: _FakeVLM())
    shown = sorted(f"{tmp_path}/{name}" for name in WEIRD_NAMES.values())
    assert cli.main(["caption", "--quiet", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.encode("utf-8") and sorted(out.splitlines()) == [f"{name}: a cat" for name in shown]
    assert cli.main(["caption", "--quiet", "--json", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    records = [json.loads(line) for line in out.splitlines()]
    assert out.encode("utf-8")  # strict: no lone surrogates, so the bytes written are UTF-8
    assert sorted(record["image"] for record in records) == shown
    assert {record["combo"] for record in records} == {"fake\\x1b[2J"} and "\x1b" not in out


def test_error_lines_from_main_escape_names_in_messages(tmp_path, capsys):
    from PIL import Image

    from vlm_demo import cli

    photo, checkpoint = tmp_path / "x.png", tmp_path / "ckpt\x1b[31m\nend"
    Image.new("RGB", (32, 32)).save(photo)
    checkpoint.mkdir()
    assert cli.main(["chat", str(tmp_path / "gone\x1b]0;title\x07.png")]) == 2
    assert cli.main(["caption", str(photo), "--checkpoint", str(checkpoint)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == f"error: {tmp_path}/gone\\x1b]0;title\\x07.png: no such file", lines
    assert len(lines) == 2 and lines[1].startswith("error: ") and "ckpt\\x1b[31m" in lines[1], lines
    assert "\x1b" not in "".join(lines)


def test_analysis_verbs_escape_the_names_they_print(tmp_path, monkeypatch, capsys):
    import json
    from types import SimpleNamespace

    from PIL import Image

    from vlm_demo import cli, cli_options
    from vlm_demo.analysis import cli as analysis_cli
    from vlm_demo.analysis import figures

    photo, out = tmp_path / "cat\x1b[31m\u202e.png", tmp_path / "fig\n\x9b1m.png"
    Image.new("RGB", (32, 32)).save(photo, format="PNG")
    monkeypatch.setattr(cli_options, "load_vlm", lambda *_: _FakeVLM())
    monkeypatch.setattr(analysis_cli, "neighbors_record", lambda vlm, image, name, *_: ({"image": name}, None))
    monkeypatch.setattr(figures, "pca_view", lambda *_, **__: SimpleNamespace(title="PCA", status="fake"))
    monkeypatch.setattr(figures, "save_figure", lambda view, path: path)
    monkeypatch.setattr(figures, "notes", lambda view: "notes")
    assert cli.main(["neighbors", str(photo), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["image"] == f"{tmp_path}/cat\\x1b[31m\\u202e.png"
    assert cli.main(["pca", str(photo), "--caption", "--out", str(out)]) == 0
    assert capsys.readouterr().out.splitlines() == ["caption of cat\\x1b[31m\\u202e.png: a cat", "PCA; fake", "notes",
                                                    f"wrote {tmp_path}/fig\\n\\x9b1m.png"]
