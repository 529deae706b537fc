"""The TerraAlign efficiency claims on the --tiny budget: the query adapter's halved tokens against self-attention,
and the align stage's cost per sample against the LLM stage's, read from the runs' own timings."""

from __future__ import annotations

import json
import statistics

import pytest
from study_helpers import tiny_study

from train.study import VERDICTS, run_claim
from train.study.claims_efficiency import non_inferiority


@pytest.fixture(scope="module")
def budget(study_root):
    import train.study.claims_efficiency  # noqa: F401 - registers them

    with tiny_study(study_root, seeds=2) as budget:
        yield budget


def test_non_inferiority_needs_the_interval_above_minus_the_margin():
    assert non_inferiority({"low": -0.05, "high": 0.2}, 0.1) == "reproduced"
    assert non_inferiority({"low": -0.3, "high": -0.15}, 0.1) == "not reproduced"
    assert non_inferiority({"low": -0.3, "high": 0.2}, 0.1) == "inconclusive"
    assert non_inferiority({"low": None, "high": None}, 0.1) == "inconclusive"


def test_query_halves_tokens_compares_captions_of_the_two_adapters_item_by_item(budget):
    record = run_claim("query-halves-tokens", budget)
    details = record["details"]
    assert record["verdict"] in VERDICTS and set(details["cider"]) == {"qa-query", "qa-attention"}
    assert details["image_tokens"]["qa-query"] < details["image_tokens"]["qa-attention"]
    assert record["value"] == pytest.approx(
        sum(details["cider"]["qa-query"]) / 2 - sum(details["cider"]["qa-attention"]) / 2)
    assert f"query minus attention {record['value']:+.3f}" in record["figure"]


def test_align_cost_reads_seconds_per_sample_from_the_runs_logged_throughput(budget):
    record = run_claim("llm-free-align-cost", budget)
    details = record["details"]
    metrics = (budget.root / "runs" / "align-mlp" / "seed-0" / "0-align" / "metrics.jsonl").read_text().splitlines()
    rates = [json.loads(line)["samples_per_s"] for line in metrics if "samples_per_s" in line]
    expected = 1 / statistics.median(rates)
    assert details["align_seconds_per_sample"][0] == pytest.approx(expected)
    assert details["ratio"][0] == pytest.approx(details["llm_seconds_per_sample"][0] / expected)
    assert record["verdict"] in VERDICTS and len(details["ratio"]) == 2
