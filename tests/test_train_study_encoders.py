"""The ResNet-to-ViT seed's claims on the --tiny budget: distillation to DINOv2-small's tokens with multistage
adapters (all stage maps or the last alone) and with the encoder frozen, joint or sequential."""

from __future__ import annotations

import statistics

import pytest
from study_helpers import tiny_study

from train.study import VERDICTS, run_claim
from train.study.power import HIERARCHICAL

pytestmark = pytest.mark.slow  # the packaged EfficientNet-Lite0 and DINOv2-small run (and one trains) on 224 px images


@pytest.fixture(scope="module")
def budget(study_root):
    import train.study.claims_encoders  # noqa: F401 - registers them

    with tiny_study(study_root, seeds=1) as budget:  # one seed: these runs cost the most
        yield budget


def test_multistage_fusion_sets_every_version_against_the_last_map_alone(budget):
    record = run_claim("multistage-fusion", budget)
    assert record["verdict"] in VERDICTS
    mse = record["details"]["feature_mse"]
    assert set(mse) == {"distil-single", "distil-v1", "distil-v2", "distil-v3", "distil-v4"}
    assert all(len(v) == 1 and v[0] > 0 for v in mse.values())
    assert "one seed: no interval" in record["figure"] and record["verdict"] == "inconclusive"
    assert f"v4 {statistics.fmean(mse['distil-v4']):.4f}" in record["figure"]
    assert record["value"] == pytest.approx(statistics.fmean(a - b for a, b in zip(mse["distil-single"],
                                                                                   mse["distil-v1"])))
    import json

    items = json.loads((budget.root / "runs" / "distil-v1" / "seed-0" / "0-align" / "feature_mse_items.json")
                       .read_text())
    assert statistics.fmean(items) == pytest.approx(mse["distil-v1"][0], rel=1e-5)  # per image, averaging to it
    assert record["interval_method"] == HIERARCHICAL
    single = json.loads((budget.root / "runs" / "distil-single" / "seed-0" / "0-align" / "adapter" / "config.json")
                        .read_text())
    assert single["stages"] == [3] and single["llm"] == "dinov2-small"


def test_encoder_training_evaluates_each_run_with_its_own_encoder(budget):
    from safetensors.torch import load_file

    from train.evaluate import feature_mse
    from train.loop import gather_samples
    from train.study.runs import run_config
    from vlm_demo.adapters import load_adapter
    from vlm_demo.encoders import build_encoder

    record = run_claim("encoder-training", budget)
    assert record["verdict"] in VERDICTS
    mse = record["details"]["feature_mse"]
    assert set(mse) == {"frozen", "frozen, 8 steps", "joint", "sequential"} and all(len(v) == 1 for v in mse.values())
    assert "frozen for as long minus sequential" in record["details"]["gaps"]  # same steps as joint + sequential
    assert f"joint {mse['joint'][0]:.4f}" in record["figure"]
    runs = budget.root / "runs"
    assert (runs / "distil-v4" / "seed-0").is_dir()  # the frozen run is multistage-fusion's
    joint = runs / "distil-v4-joint" / "seed-0" / "0-align" / "adapter"
    sequential = runs / "distil-v4-joint-sequential" / "seed-0" / "1-align" / "adapter"
    tuned = load_file(joint / "encoder.safetensors")
    kept = load_file(sequential / "encoder.safetensors")
    assert all((tuned[k] == kept[k]).all() for k in tuned)  # sequential keeps the jointly tuned encoder
    encoder = build_encoder("efficientnet-lite0")
    encoder.load_state_dict(tuned)
    samples = gather_samples(run_config(joint, budget).data.eval, "test")
    again = feature_mse(encoder.eval(), load_adapter(joint), build_encoder("dinov2-small"), samples)
    assert again["mse_mean"] == pytest.approx(mse["joint"][0], rel=1e-4)  # the tuned encoder's features
