"""Power and uncertainty for the study (issue 32, step 3): the hierarchical bootstrap, the symmetric rules at each
claim's smallest effect of interest, seeds from a pilot's SD, the registry's fields, --plan and the report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from train.study import CLAIMS, KINDS, VERDICTS, labelled
from train.study.cli import load_claims
from train.study.power import (
    HIERARCHICAL,
    OVER_SEEDS,
    ROUND_ONE_T,
    bootstrap_interval,
    item_rows,
    paired_seed_interval,
    seeds_needed,
)
from train.study.runs import equivalence, paired_verdict, superiority

ROOT = Path(__file__).resolve().parent.parent


def iv(low: float | None, high: float | None) -> dict:
    mean = None if low is None else (low + high) / 2
    return {"mean": mean, "low": low, "high": high}


def simulated_seeds(rng: np.random.Generator, seeds: int = 4, items: int = 40, effect: float = 0.3) -> list:
    """Two arms scored on the same items per seed: a seed effect, an item effect shared by both arms, noise."""
    rows = []
    for _ in range(seeds):
        shift = rng.normal(0, 0.1)
        shared = rng.normal(0, 1, items)
        rows.append(item_rows(shared + effect + shift + rng.normal(0, 0.5, items), shared + rng.normal(0, 0.5, items)))
    return rows


def test_the_bootstrap_interval_covers_the_true_mean_difference_at_about_its_level():
    rng = np.random.default_rng(0)
    covered = [(found["low"] <= 0.3 <= found["high"])
               for found in (bootstrap_interval(simulated_seeds(rng), draws=400, seed=trial) for trial in range(120))]
    assert 0.85 <= np.mean(covered) <= 1.0


def test_the_bootstrap_is_paired_by_item_and_repeatable():
    rng = np.random.default_rng(1)
    rows = simulated_seeds(rng)
    paired = bootstrap_interval(rows, draws=500)
    assert paired == bootstrap_interval(rows, draws=500)  # a fixed resampling seed
    unpaired = [item_rows(r[:, 0], rng.permutation(r[:, 1])) for r in rows]  # the items' shared part no longer cancels
    assert paired["high"] - paired["low"] < bootstrap_interval(unpaired, draws=500)["high"] - \
        bootstrap_interval(unpaired, draws=500)["low"]
    assert paired["method"] == HIERARCHICAL and len(paired["per_seed"]) == 4 and paired["sd"] > 0


def test_one_seed_gives_no_interval_and_a_seed_bootstrap_says_so():
    one = bootstrap_interval([item_rows([1.0, 2.0], [0.0, 0.5])])
    assert one["low"] is None and one["high"] is None and one["mean"] == pytest.approx(1.25)
    seeds = paired_seed_interval([2.0, 2.5, 2.2], [1.0, 1.1, 1.3])
    assert seeds["method"] == OVER_SEEDS and seeds["low"] <= seeds["mean"] <= seeds["high"]
    with pytest.raises(ValueError, match="same items"):
        item_rows([1.0, 2.0], [1.0])


def test_a_superiority_claim_whose_interval_ends_below_its_smallest_effect_is_not_reproduced():
    assert superiority(iv(-0.027, 0.042), 0.1) == "not reproduced"
    assert superiority(iv(0.01, 0.05), 0.1) == "not reproduced"  # real, but smaller than the size that matters
    assert superiority(iv(0.05, 0.3), 0.1) == "reproduced"
    assert superiority(iv(-0.05, 0.3), 0.1) == "inconclusive"
    assert paired_verdict(iv(0.05, 0.3), iv(-0.5, -0.1), 0.1) == "inconclusive"  # the secondary figure reversed


def test_an_equivalence_claim_is_judged_against_its_margin_on_both_sides():
    assert equivalence([iv(-0.05, 0.05)], 0.07) == "reproduced"
    assert equivalence([iv(-0.3, -0.1)], 0.07) == "not reproduced"
    assert equivalence([iv(0.1, 0.3)], 0.07) == "not reproduced"
    assert equivalence([iv(-0.05, 0.1)], 0.07) == "inconclusive"


def test_seeds_needed_grows_with_the_pilot_sd_and_shrinks_with_the_smallest_effect():
    counts = [seeds_needed(sd, 0.1) for sd in (0.01, 0.05, 0.1, 0.2)]
    assert counts == sorted(counts) and counts[0] == 2 and counts[-1] > counts[1]
    assert seeds_needed(1.0, 1.0) == 10  # the textbook paired t test: d = 1 at 80% power needs about 10
    assert seeds_needed(0.1, 0.2) < seeds_needed(0.1, 0.05)
    assert seeds_needed(None, 0.1) is None and seeds_needed(0.0, 0.1) == 2
    assert seeds_needed(0.1, 0.1, "equivalence") > 2


def test_every_claim_registers_its_kind_and_smallest_effect_of_interest_before_it_runs():
    load_claims()
    for claim in CLAIMS.values():
        assert claim.kind in KINDS and claim.smallest_effect > 0, claim.id
        assert claim.effect_why and claim.rule and callable(claim.judge) and callable(claim.judged), claim.id
    with pytest.raises(ValueError, match="kind"):
        from dataclasses import replace

        replace(next(iter(CLAIMS.values())), kind="bigger")


def test_align_only_is_not_reproduced_once_its_smallest_effect_is_set():
    load_claims()
    published = {r["id"]: r for r in json.loads((ROOT / "docs" / "findings.json").read_text())["claims"]}
    record = labelled(published["align-only"])
    assert record["low"] < 0 < record["high"] < CLAIMS["align-only"].smallest_effect
    assert record["verdict"] == "not reproduced" and record["kind"] == "superiority"
    assert record["interval_method"] == ROUND_ONE_T and record["seeds_needed"] >= 2 and record["pilot_sd"] > 0


def test_a_round_one_record_is_re_judged_by_the_symmetric_rule_and_keeps_its_t_interval():
    load_claims()
    old = {"id": "align-only", "verdict": "inconclusive", "rule": "old rule", "seeds": [0, 1, 2], "details": {
        "cider": {"caption run": [0.05, 0.05, 0.05]}, "gain_over_blind": {**iv(-0.02, 0.04), "sd": 0.01}}}
    assert labelled(old)["verdict"] == "inconclusive"  # the guard: the caption run itself says nothing
    old["details"]["cider"]["caption run"] = [2.0, 2.1, 1.9]
    relabelled = labelled(old)
    assert relabelled["verdict"] == "not reproduced" and relabelled["rule"] == CLAIMS["align-only"].rule
    assert relabelled["interval_method"] == ROUND_ONE_T and relabelled["pilot_sd"] == 0.01


def test_plan_prints_every_claim_and_runs_nothing(monkeypatch, capsys, tmp_path):
    from train.__main__ import main

    def no_training(*args, **kwargs):
        raise AssertionError("--plan must not train")

    monkeypatch.setattr("train.study.runs.run_sweep", no_training)
    monkeypatch.setattr("train.study.cli.run_claim", no_training)
    assert main(["study", "--plan", "--out", str(ROOT / "docs")]) == 0
    out = capsys.readouterr().out
    assert "seeds needed" in out and all(f"\n{claim} " in out for claim in CLAIMS)
    assert main(["study", "--plan", "--out", str(tmp_path)]) == 0  # no findings yet: no pilot
    assert "align-only" in capsys.readouterr().out and not (tmp_path / "findings.json").exists()


def test_findings_give_every_claim_its_smallest_effect_seed_counts_interval_method_and_the_multiplicity():
    text = (ROOT / "docs" / "findings.md").read_text()
    claims = json.loads((ROOT / "docs" / "findings.json").read_text())["claims"]
    assert "Multiplicity: this report gives" in text and "by chance alone" in text
    for claim in claims:
        assert claim["smallest_effect"] > 0 and claim["interval_method"] and claim["kind"] in KINDS
        assert claim["seeds_needed"] >= 2 and claim["pilot_sd"] is not None
        section = text.split(f"## {claim['id']}:")[1].split("\n## ")[0]
        assert "smallest effect of interest" in section and f"{claim['seeds_needed']} for 80% power" in section
        assert f"Intervals: {claim['interval_method']}" in section


def test_a_broken_premise_is_not_testable_unless_a_matched_arm_restores_it():
    load_claims()
    published = {r["id"]: r for r in json.loads((ROOT / "docs" / "findings.json").read_text())["claims"]}
    record = published["k-tokens"]
    broken = labelled({**record, "details": {**record["details"], "premise_restored": False}})
    assert broken["verdict"] == "not testable at this scale" and broken["rule_verdict"] in VERDICTS
    restored = labelled({**record, "details": {**record["details"], "premise_restored": True}})
    assert restored["verdict"] == restored["rule_verdict"] == broken["rule_verdict"]


def test_k_tokens_runs_the_matched_encoder_and_bootstraps_per_item_training_losses(study_root):
    import statistics

    from study_helpers import tiny_study

    from train.study import run_claim
    from train.study.claims import K_ENCODER
    from train.study.val_items import item_losses

    load_claims()
    with tiny_study(study_root, seeds=2) as budget:
        record = run_claim("k-tokens", budget)
    gap = record["details"]["train_k5_minus_k1"]
    assert gap["method"] == HIERARCHICAL == record["interval_method"] and gap["low"] <= gap["mean"] <= gap["high"]
    runs = budget.root / "runs"
    per_seed = [statistics.fmean(item_losses(runs / f"linear-k5-{K_ENCODER}" / f"seed-{s}" / "0-caption", "train")) -
                statistics.fmean(item_losses(runs / f"linear-k1-{K_ENCODER}" / f"seed-{s}" / "0-caption", "train"))
                for s in (0, 1)]
    assert gap["per_seed"] == pytest.approx(per_seed) and record["value"] == pytest.approx(statistics.fmean(per_seed))
    assert record["details"]["premise_restored"] is False  # the tiny LLM's tokens are 32 wide: 384-d does not fit
    assert record["verdict"] == "not testable at this scale"
    assert record["kind"] == "equivalence" and record["seeds_needed"] >= 2


def test_the_k_tokens_premise_holds_when_the_encoder_vector_fits_in_one_llm_token(tmp_path):
    from train.study.claims import fits_one_token

    for name, width in (("fits", 384), ("too-wide", 1280)):
        (tmp_path / name / "adapter").mkdir(parents=True)
        (tmp_path / name / "adapter" / "config.json").write_text(json.dumps({"token_dim": width, "llm_hidden": 576}))
    assert fits_one_token(tmp_path / "fits") and not fits_one_token(tmp_path / "too-wide")


def test_k_tokens_is_judged_only_once_every_run_has_plateaued():
    from train.study.claims import K_MARGIN, k_verdict

    apart = {"low": -0.5, "high": -0.4}
    close = {"low": -K_MARGIN / 2, "high": K_MARGIN / 2}
    flat, falling = {"linear-k1": [True, True]}, {"linear-k1": [True, False]}
    for gap, verdict in ((apart, "not reproduced"), (close, "reproduced")):
        details = {"train_k2_minus_k1": gap, "train_k5_minus_k1": gap}
        assert k_verdict({**details, "plateaued": flat}) == verdict
        assert k_verdict({**details, "plateaued": falling}) == "inconclusive"
