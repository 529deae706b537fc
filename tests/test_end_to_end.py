"""The real packaged encoder and LLM, offline, on a real photo: library API and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vlm_demo.combos import get_combo
from vlm_demo.encoders import build_encoder
from vlm_demo.llms import GenerationSettings
from vlm_demo.pipeline import VisionLanguageModel

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def vlm() -> VisionLanguageModel:
    return VisionLanguageModel.from_combo("default")


def test_default_combination_uses_real_pretrained_parts(vlm, photo):
    assert vlm.encoder.name == get_combo("default").encoder and vlm.llm.name == "smollm2-135m-instruct"
    assert vlm.encoder.name.startswith("efficientnet-lite0")
    assert vlm.llm.hidden_size == 576 and vlm.llm.vocabulary_embeddings().shape == (49152, 576)
    head = build_encoder("efficientnet-lite0").class_head  # the same weights with their own activation
    assert head.logits(build_encoder("efficientnet-lite0")([photo]).pooled).argmax().item() in range(281, 286)
    assert vlm.trained == get_combo("default").trained


def test_real_photo_gets_a_caption(vlm, photo):
    captions = vlm.caption([photo, photo.rotate(90, expand=True)], settings=GenerationSettings(max_new_tokens=12))
    assert len(captions) == 2 and all(isinstance(c, str) and c.strip() for c in captions)


@pytest.mark.skipif(not get_combo("default").trained, reason="no default adapter shipped")
def test_shipped_default_names_colour_and_shape_of_most_held_out_single_shapes(vlm):
    from train.data.shapes import shapes_samples
    from train.evaluate import shapes_attributes

    singles = [s for s in shapes_samples("test", 40, vqa_per_image=0) if len(s.meta["objects"]) == 1][:12]
    captions = vlm.caption([s.load_image() for s in singles], settings=GenerationSettings(max_new_tokens=16))
    right = [shapes_attributes(c, s.meta["objects"]) for c, s in zip(captions, singles)]
    assert vlm.lora is not None and vlm.lora in vlm.llm.loras  # the shipped LoRA is switched on for it
    assert sum(r["colour"] and r["shape"] for r in right) > len(singles) / 2, captions


@pytest.mark.skipif(not get_combo("default").trained, reason="no default adapter shipped")
def test_cli_caption_of_the_cat_photo_names_a_cat(tmp_path, photo):
    from train.data.openworld import PHOTOS
    from train.evaluate import names_object

    photo.save(tmp_path / "chelsea.jpg")
    result = subprocess.run([sys.executable, "-m", "vlm_demo", "caption", str(tmp_path / "chelsea.jpg")], cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert names_object(result.stdout, list(PHOTOS["chelsea"][2])), result.stdout


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
