"""The claims that set families side by side, on the --tiny budget: families-classification (LoRA on the 40-way
question after each family's align stage, shared with components-per-family) and pooled-vs-per-patch."""

from __future__ import annotations

import json

import pytest
from study_helpers import numbers_in, tiny_study

from train.data.shapes import KIND_QUESTION
from train.study import VERDICTS, run_claim


@pytest.fixture(scope="module")
def budget(study_root):
    import train.study.claims_families  # noqa: F401 - registers them

    with tiny_study(study_root, seeds=1) as budget:  # one seed: the families' runs are many
        yield budget


def test_families_classification_fine_tunes_each_aligned_family_with_lora_on_the_40_way_question(budget):
    finished = list((budget.root / "runs").glob("align-*/seed-0/0-align/summary.json"))
    stamps = {path: path.stat().st_mtime_ns for path in finished}  # components-per-family's, when it ran first
    record = run_claim("families-classification", budget)
    assert all(path.stat().st_mtime_ns == stamp for path, stamp in stamps.items())  # reused, not trained again
    assert record["verdict"] in VERDICTS
    details = record["details"]
    overall = details["overall"]
    assert set(overall) == {"mlp", "attention", "query"} and all(len(v) == 1 for v in overall.values())
    assert all(round(v[0], 3) in numbers_in(record["figure"]) for v in overall.values())
    assert details["classes"] == 40 and details["test_items"] >= 1 and "one seed: no interval" in record["figure"]
    for family in ("mlp", "attention", "query"):
        run = budget.root / "runs" / f"kind-{family}" / "seed-0" / "1-caption"  # after the family's align stage
        config = json.loads((run / "config.json").read_text())
        assert config["caption"]["llm_mode"] == "lora" and config["model"]["adapter"] == family
        assert config["model"]["init_from"].endswith(f"align-{family}/seed-0/0-align/adapter")
        asked = [json.loads(line) for line in (run / "eval_predictions.jsonl").read_text().splitlines()]
        assert asked and all(row["prompt"] == KIND_QUESTION for row in asked)
    assert record["bars"]["after LoRA fine-tuning"]["query"]["mean"] == overall["query"][0]


def test_pooled_vs_per_patch_contrasts_details_with_the_gist(budget):
    record = run_claim("pooled-vs-per-patch", budget)
    assert record["verdict"] in VERDICTS
    details = record["details"]
    assert len(details["details_advantage"]) == len(details["gist_advantage"]) == 1
    assert record["value"] == pytest.approx(details["details_advantage"][0] - details["gist_advantage"][0])
    assert f"{record['value']:+.3f}" in record["figure"]
    assert set(details["per_type"]) == {"pooled (linear)", "per patch (mlp)"}
    assert set(record["bars"]) == {"pooled (linear)", "per patch (mlp)", "majority answer"}
    assert (budget.root / "runs" / "qa-linear" / "seed-0" / "0-caption" / "eval.json").is_file()
