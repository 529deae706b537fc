"""The ResNet-to-ViT seed's headline on the --tiny budget: a distilled CNN in the place of the VLM's own ViT, its
captions set against the ViT's and against none."""

from __future__ import annotations

import json

import pytest
import torch
from study_helpers import tiny_study

from train.study import VERDICTS, run_claim
from train.study.claims_standin import STANDIN_FILE, with_mean_class_token

pytestmark = pytest.mark.slow  # the packaged EfficientNet-Lite0 and DINOv2-small run on 224 px images


@pytest.fixture(scope="module")
def budget(study_root):
    import train.study.claims_standin  # noqa: F401 - registers it

    with tiny_study(study_root, seeds=1) as budget:
        yield budget


def test_the_patch_mean_takes_the_class_tokens_place():
    patches = torch.randn(2, 256, 8)
    features = with_mean_class_token(patches)
    assert features.tokens.shape == (2, 257, 8) and torch.equal(features.tokens[:, 1:], patches)
    assert torch.allclose(features.tokens[:, 0], patches.mean(dim=1)) and torch.equal(features.pooled,
                                                                                      features.tokens[:, 0])


def test_cnn_stands_in_captions_through_the_vits_adapter_and_llm_unchanged(budget):
    record = run_claim("cnn-stands-in", budget)
    assert record["verdict"] in VERDICTS
    cider = record["details"]["cider"]
    assert list(cider) == ["ViT (as trained)", "ViT, mean class token", "CNN stand-in", "no image"]
    assert all(len(values) == 1 and values[0] >= 0 for values in cider.values())
    run = budget.root / "runs" / "vit-vlm" / "seed-0" / "0-caption"
    config = json.loads((run / "adapter" / "config.json").read_text())
    assert config["encoder"] == "dinov2-small" and config["num_encoder_tokens"] == 257
    kept = json.loads((run / STANDIN_FILE).read_text())
    assert kept["distilled"].endswith("distil-v4/seed-0/0-align") and set(kept["items"]) == {
        "ViT, mean class token", "CNN stand-in"}
    assert record["value"] == pytest.approx(cider["CNN stand-in"][0] - cider["no image"][0])
