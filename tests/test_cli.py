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
    for option, value, words in [("--temperature", "-1", "temperature must be in [0, 2]"),
                                 ("--top-p", "5", "top-p must be in (0, 1]"),
                                 ("--max-new-tokens", "0", "max new tokens must be at least 1"),
                                 ("--batch-size", "0", "--batch-size must be at least 1"),
                                 ("--batch-size", "-1", "--batch-size must be at least 1"),
                                 ("--seed", "-1", "the seed must be 0 or more")]:
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
