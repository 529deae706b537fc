"""The command line: `list` shows every component and its availability; bad arguments fail clearly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
    assert "efficientnet-lite0  available (packaged)" in result.stdout
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
