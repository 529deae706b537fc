"""The real packaged encoder and LLM, offline, on a real photo: library API and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vlm_demo.combos import get_combo
from vlm_demo.llms import GenerationSettings
from vlm_demo.pipeline import VisionLanguageModel

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def vlm() -> VisionLanguageModel:
    return VisionLanguageModel.from_combo("default")


def test_default_combination_uses_real_pretrained_parts(vlm, photo):
    assert vlm.encoder.name == "efficientnet-lite0" and vlm.llm.name == "smollm2-135m-instruct"
    assert vlm.llm.hidden_size == 576 and vlm.llm.vocabulary_embeddings().shape == (49152, 576)
    logits = vlm.encoder.net._fc(vlm.features([photo]).pooled)
    assert logits.argmax().item() in range(281, 286)  # ImageNet's cat classes: the weights are real
    assert vlm.trained == get_combo("default").trained


def test_real_photo_gets_a_caption(vlm, photo):
    captions = vlm.caption([photo, photo.rotate(90, expand=True)], settings=GenerationSettings(max_new_tokens=12))
    assert len(captions) == 2 and all(isinstance(c, str) and c.strip() for c in captions)


def test_image_tokens_have_llm_width(vlm, photo):
    tokens = vlm.image_tokens([photo])
    assert tokens.shape == (1, vlm.adapter.num_output_tokens, 576) and torch.isfinite(tokens).all()


def test_cli_captions_a_folder_as_json_and_reports_bad_files(tmp_path, photo):
    photo.save(tmp_path / "cat.jpg")
    photo.convert("L").save(tmp_path / "grey.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    result = subprocess.run([sys.executable, "-m", "vlm_demo", "caption", str(tmp_path), "--json",
                             "--max-new-tokens", "8"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 2, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(Path(r["image"]).name for r in records) == ["cat.jpg", "grey.png"]
    assert all(r["caption"] for r in records)
    assert f"error: {tmp_path / 'broken.png'}:" in result.stderr and "Traceback" not in result.stderr
