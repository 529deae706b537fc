"""PaLM2-VAdapter's claims on the --tiny budget: the tiny LM starts from the LLM's first layers, trains as a decoder
and then as the adapter, and is compared with a perceiver and with itself trained directly by the area under the
caption stage's validation curve."""

from __future__ import annotations

import json

import pytest
from study_helpers import tiny_study

from train.study import VERDICTS, labelled, run_claim
from train.study.claims_tinylm import area


@pytest.fixture(scope="module")
def budget(study_root):
    import train.study.claims_tinylm  # noqa: F401 - registers them

    with tiny_study(study_root, seeds=2) as budget:
        yield budget


def test_the_area_under_a_validation_curve_is_its_trapezoid_mean(tmp_path):
    rows = [{"step": 0, "val_loss": 3.0}, {"step": 10, "val_loss": 1.0}, {"step": 30, "val_loss": 1.0}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert area(tmp_path) == pytest.approx((10 * 2 + 20 * 1) / 30)


def test_tinylm_progressive_starts_from_the_llm_and_restores_the_premise(budget):
    record = run_claim("tinylm-progressive", budget)
    assert record["verdict"] in VERDICTS and record["verdict"] != "not testable at this scale"
    details = record["details"]
    assert details["premise_restored"] is True
    assert set(details["areas"]) == {"tinylm-pretrained-progressive", "perceiver-fine"}
    assert record["value"] == pytest.approx(details["mean_area"]["perceiver-fine"]
                                            - details["mean_area"]["tinylm-pretrained-progressive"])
    stages = sorted(p.name for p in (budget.root / "runs" / "tinylm-pretrained-progressive" / "seed-1").iterdir())
    assert stages == ["0-decoder", "1-caption"]
    config = json.loads((budget.root / "runs" / "tinylm-pretrained-progressive" / "seed-0" / "1-caption" / "adapter"
                         / "config.json").read_text())
    assert config["init_from_llm"] is True and config["lm_width"] == 32  # the tiny LLM's own width


def test_progressive_against_direct_reuses_the_progressive_runs(budget):
    run_claim("tinylm-progressive", budget)
    done = budget.root / "runs" / "tinylm-pretrained-progressive" / "seed-0" / "1-caption" / "summary.json"
    stamp = done.stat().st_mtime_ns
    record = run_claim("progressive-vs-direct", budget)
    assert done.stat().st_mtime_ns == stamp and record["verdict"] in VERDICTS
    assert set(record["details"]["areas"]) == {"tinylm-pretrained-progressive", "tinylm-pretrained-direct"}


def test_a_round_one_record_without_an_area_stays_not_testable():
    import train.study.claims_tinylm  # noqa: F401

    record = {"id": "tinylm-progressive", "verdict": "not reproduced", "rule": "", "details": {"steps_gap": {}}}
    assert labelled(record)["verdict"] == "not testable at this scale"
