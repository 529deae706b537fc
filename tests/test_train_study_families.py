"""The claims that set families side by side, on the --tiny budget: the families' caption runs on captions and
questions are trained once and serve components-per-family, families-classification and pooled-vs-per-patch."""

from __future__ import annotations

import pytest
from study_helpers import numbers_in, tiny_study

from train.study import VERDICTS, run_claim


@pytest.fixture(scope="module")
def budget(study_root):
    import train.study.claims_families  # noqa: F401 - registers them

    with tiny_study(study_root, seeds=1) as budget:  # one seed: the families' runs are many
        yield budget


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
    assert record["bars"]["after align"]["query"]["mean"] == cells["query after align"]["count"]["mean"]


def test_families_classification_asks_every_family_the_same_questions(budget):
    finished = list((budget.root / "runs").glob("qa-*/seed-0/0-caption/summary.json"))
    stamps = {path: path.stat().st_mtime_ns for path in finished}  # components-per-family's runs, when it ran first
    record = run_claim("families-classification", budget)
    assert all(path.stat().st_mtime_ns == stamp for path, stamp in stamps.items())  # reused, not trained again
    assert record["verdict"] in VERDICTS
    overall = record["details"]["overall"]
    assert set(overall) == {"mlp", "attention", "query"} and all(len(v) == 1 for v in overall.values())
    assert all(round(v[0], 3) in numbers_in(record["figure"]) for v in overall.values())
    assert set(record["details"]["per_type"]["mlp"]) >= {"count", "overall"}
    assert "one seed: no interval" in record["figure"] and record["verdict"] == "inconclusive"
    bars = record["bars"]["attention"]
    assert {t: bar["mean"] for t, bar in bars.items()} == record["details"]["per_type"]["attention"]
    assert record["bars"]["majority answer"] == record["details"]["majority_answer"]


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
