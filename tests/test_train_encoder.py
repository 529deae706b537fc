"""The trainable encoder on tiny configs: joint training at its own learning rate with BatchNorm frozen, the encoder
saved beside the adapter and used again by `sequential` and the pipeline, and a feature cache keyed on weights."""

from __future__ import annotations

import pytest
import torch
from study_helpers import metrics, overrides, run_stage, weights

from train.config import load_config
from train.data.shapes import shapes_samples
from train.features import FeatureCache
from vlm_demo.encoders import build_encoder

pytestmark = pytest.mark.slow  # the packaged EfficientNet-Lite0 trains on 224 px images


@pytest.fixture(scope="module")
def joint_run(tiny_llm_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("joint")
    final = run_stage("caption", overrides(tiny_llm_dir, root / "joint", 'model.encoder_mode="joint"',
                                           "model.encoder_lr=1e-3", "train.lr=4e-3", "train.max_steps=3",
                                           count=4), root / "cache")
    return root, final


def test_joint_training_changes_the_encoder_but_not_its_batchnorm(joint_run):
    root, final = joint_run
    tuned, packaged = weights(final, "encoder.safetensors"), build_encoder("efficientnet-lite0").state_dict()
    assert tuned.keys() == packaged.keys()
    assert not torch.equal(tuned["net._conv_stem.weight"], packaged["net._conv_stem.weight"])
    batchnorm = [k for k in tuned if "_bn" in k]
    assert batchnorm and all(torch.equal(tuned[k], packaged[k]) for k in batchnorm)


def test_the_encoder_trains_at_its_own_learning_rate(joint_run):
    root, _ = joint_run
    rows = metrics(root / "joint")
    assert all(row["encoder_lr"] == pytest.approx(row["lr"] / 4) for row in rows)


def test_sequential_keeps_the_jointly_tuned_encoder_frozen_and_needs_one(joint_run, tiny_llm_dir, tmp_path):
    root, final = joint_run
    second = run_stage("caption", overrides(tiny_llm_dir, tmp_path / "seq", 'model.encoder_mode="sequential"',
                                            f'model.init_from="{final}"', count=4), root / "cache")
    tuned, kept = weights(final, "encoder.safetensors"), weights(second, "encoder.safetensors")
    assert all(torch.equal(tuned[k], kept[k]) for k in tuned)
    assert not torch.equal(weights(final)["fc1.weight"], weights(second)["fc1.weight"])
    plain = run_stage("caption", overrides(tiny_llm_dir, tmp_path / "plain", count=4), root / "cache")
    with pytest.raises(ValueError, match="encoder.safetensors"):
        from train.loop import train_stage

        train_stage("caption", load_config(None, overrides(tiny_llm_dir, tmp_path / "bad", f'model.init_from="{plain}"',
                                                           'model.encoder_mode="sequential"')), progress=False)


def test_the_pipeline_loads_the_tuned_encoder_and_leaves_a_shared_one_alone(joint_run, tiny_llm_dir):
    from vlm_demo.llms import load_llm
    from vlm_demo.pipeline import VisionLanguageModel

    _, final = joint_run
    shared = build_encoder("efficientnet-lite0")
    before = shared.net._conv_stem.weight.clone()
    vlm = VisionLanguageModel.from_checkpoint(str(final), llm=load_llm(str(tiny_llm_dir)), encoder=shared)
    tuned = weights(final, "encoder.safetensors")["net._conv_stem.weight"]
    assert torch.equal(vlm.encoder.net._conv_stem.weight.cpu(), tuned)
    assert torch.equal(shared.net._conv_stem.weight, before)


def test_feature_cache_never_serves_features_of_other_weights(tmp_path):
    samples = shapes_samples("test", 2, vqa_per_image=0)
    encoder = build_encoder("efficientnet-lite0")
    first = FeatureCache(encoder, root=tmp_path)
    original, _ = first.features(samples, progress=False)
    again = FeatureCache(encoder, root=tmp_path)
    again.features(samples, progress=False)
    assert again.hits == 2 and again.misses == 0
    with torch.no_grad():
        encoder.net._conv_head.weight.mul_(1.5)  # a fine-tuned encoder: same name, other weights
    tuned = FeatureCache(encoder, root=tmp_path)
    changed, _ = tuned.features(samples, progress=False)
    assert tuned.misses == 2 and tuned.folder != first.folder
    assert not torch.allclose(changed.tokens, original.tokens)
