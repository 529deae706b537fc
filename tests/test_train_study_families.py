"""The claims that set families side by side, on the --tiny budget: the families' caption runs on captions and
questions are trained once and serve components-per-family, families-classification and pooled-vs-per-patch."""

from __future__ import annotations

import os

import pytest
from study_helpers import numbers_in, tiny_study

from train.study import VERDICTS, run_claim


@pytest.fixture(scope="module")
def budget(tmp_path_factory):
    import train.study.claims_families  # noqa: F401 - registers them

    saved = os.environ.get("VLM_DEMO_CACHE")
    yield tiny_study(tmp_path_factory.mktemp("study"))
    if saved is None:
        os.environ.pop("VLM_DEMO_CACHE", None)
    else:
        os.environ["VLM_DEMO_CACHE"] = saved


def test_components_per_family_counts_each_family_after_each_stage(budget):
    record = run_claim("components-per-family", budget)
    assert record["verdict"] in VERDICTS
    cells = record["details"]["cells"]
    assert set(cells) == {f"{f} after {s}" for f in ("mlp", "attention", "query") for s in ("align", "caption")}
    for name, cell in cells.items():
        assert 1 <= cell["count"]["mean"] <= 32 and cell["verdict"] in VERDICTS  # the tiny LLM is 32 wide
        assert f"{name} {cell['count']['mean']:.1f}" in record["figure"]
    assert record["value"] == min(cells[c]["count"]["mean"] for c in ("mlp after caption", "attention after align",
                                                                     "query after align"))


def test_families_classification_asks_every_family_the_same_questions(budget):
    record = run_claim("families-classification", budget)
    assert record["verdict"] in VERDICTS
    overall = record["details"]["overall"]
    assert set(overall) == {"mlp", "attention", "query"} and all(len(v) == 2 for v in overall.values())
    assert all(round(sum(v) / 2, 3) in numbers_in(record["figure"]) for v in overall.values())
    assert set(record["details"]["per_type"]["mlp"]) >= {"count", "overall"}
    runs = budget.root / "runs"
    assert sorted(p.name for p in runs.iterdir()) == ["align-attention", "align-mlp", "align-query", "qa-attention",
                                                     "qa-mlp", "qa-query"]  # nothing retrained


def test_pooled_vs_per_patch_contrasts_details_with_the_gist(budget):
    record = run_claim("pooled-vs-per-patch", budget)
    assert record["verdict"] in VERDICTS
    details = record["details"]
    assert len(details["details_advantage"]) == len(details["gist_advantage"]) == 2
    assert record["value"] == pytest.approx(sum(a - b for a, b in zip(details["details_advantage"],
                                                                      details["gist_advantage"])) / 2)
    assert f"{record['value']:+.3f}" in record["figure"]
    assert set(details["per_type"]) == {"pooled (linear)", "per patch (mlp)"}
    assert (budget.root / "runs" / "qa-linear" / "seed-1" / "0-caption" / "eval.json").is_file()
