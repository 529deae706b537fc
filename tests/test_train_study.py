"""`python -m train study` on the --tiny budget: registered claims run end to end, share their runs, and write
findings.md, findings.json and plots; the verdict rules and the report merge are checked on their own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from train.study import CLAIMS, VERDICTS, Finding
from train.study.claims import equivalence
from train.study.report import write_report
from train.study.runs import combined, data_override, superiority

SEEDS_FOLDER = Path(__file__).resolve().parent.parent.parent / "shared" / "seeds"
CHEAP = {"k-tokens", "linear-full-rank", "max-cosine-random", "nearest-token-destroys", "components-80"}


def test_the_cheap_claims_are_registered_with_their_seed_and_paper_figure():
    import train.study.claims  # noqa: F401 - registers them
    import train.study.claims_components  # noqa: F401

    assert CHEAP <= set(CLAIMS)
    for claim in CLAIMS.values():
        assert claim.section and claim.paper_figure and callable(claim.run)
        if SEEDS_FOLDER.is_dir():
            assert (SEEDS_FOLDER / claim.seed).is_file(), claim.seed


def test_every_claim_of_issues_14_and_32_is_registered_once_with_its_seed_paper():
    from train.study.cli import load_claims

    load_claims()
    later = {"emd-prealign", "align-only", "drift-over-epochs", "components-per-family", "families-classification",
             "pooled-vs-per-patch", "encoder-training", "tinylm-progressive", "multistage-fusion"}
    untested_in_round_one = {"zero-shot-vqa", "progressive-vs-direct", "query-halves-tokens", "llm-free-align-cost",
                             "cnn-stands-in"}
    assert CHEAP | later | untested_in_round_one == set(CLAIMS)
    seeds = {claim.seed for claim in CLAIMS.values()}
    assert seeds == {"single-fc-layer-adapter.txt", "terraalign-thesis.txt", "resnet-to-vit-adapter.txt",
                     "palm2-vadapter.txt"}
    for claim in CLAIMS.values():
        assert claim.statement and claim.section and claim.paper_figure
        if SEEDS_FOLDER.is_dir():
            assert (SEEDS_FOLDER / claim.seed).is_file(), claim.seed


def test_equivalence_verdicts_follow_the_intervals():
    inside, outside, wide = ({"mean": m, "low": lo, "high": hi} for m, lo, hi in
                             [(0.0, -0.1, 0.1), (1.0, 0.8, 1.2), (0.0, -2.0, 2.0)])
    assert equivalence([inside], 0.2) == "reproduced"
    assert equivalence([inside, outside], 0.2) == "not reproduced"
    assert equivalence([inside, wide], 0.2) == "inconclusive"
    assert equivalence([{"mean": 0.0, "low": None, "high": None}], 0.2) == "inconclusive"  # one seed
    with pytest.raises(ValueError, match="verdict"):
        Finding("x", 0.0, None, None, "probably", "rule")


def test_superiority_and_combined_verdicts():
    above, below, across = ({"mean": m, "low": lo, "high": hi} for m, lo, hi in
                            [(1.0, 0.5, 1.5), (-1.0, -1.5, 0.0), (0.0, -1.0, 1.0)])
    assert [superiority(iv, 0.2) for iv in (above, below, across)] == ["reproduced", "not reproduced", "inconclusive"]
    assert superiority(across, 1.5) == "not reproduced"  # the size that matters is ruled out
    assert superiority({"mean": 1.0, "low": None, "high": None}, 0.2) == "inconclusive"
    assert combined(["reproduced", "reproduced"]) == "reproduced"
    assert combined(["reproduced", "inconclusive"]) == "inconclusive"
    assert combined(["inconclusive", "not reproduced", "reproduced"]) == "not reproduced"


def test_data_override_keeps_the_budgets_sizes():
    from train.study import Budget

    budget = Budget("tiny", Path("."), [0], ['data.eval=[{name="shapes",count=3,vqa_per_image=0}]'])
    assert data_override(budget, "eval", vqa_per_image=4) == 'data.eval=[{name="shapes",count=3,vqa_per_image=4}]'


def test_report_keeps_earlier_claims_and_plots_curves_and_bars(tmp_path):
    def record(claim: str, curves: dict, bars: dict | None = None) -> dict:
        return {"id": claim, "seed": "s.txt", "section": "1", "statement": "s", "paper_figure": "p", "figure": "f",
                "value": 1.0, "low": 0.5, "high": 1.5, "verdict": "reproduced", "rule": "r", "details": {},
                "curves": curves, "bars": bars or {}, "budget": "tiny", "seeds": [0, 1], "cpu_minutes": 0.5,
                "command": f"c {claim}"}

    write_report([record("a", {"arm": ([1, 2], [3.0, 2.0])})], tmp_path)
    with_interval = {"colour": 0.2, "count": {"mean": 0.6, "low": -0.1, "high": 0.9}}  # a low below 0 is clipped
    write_report([record("b", {}), record("c", {}, {"mlp": with_interval, "majority": {"count": 0.5}})], tmp_path)
    claims = json.loads((tmp_path / "findings.json").read_text())["claims"]
    assert [c["id"] for c in claims] == ["a", "b", "c"]
    text = (tmp_path / "findings.md").read_text()
    assert "`c a`" in text and "`c b`" in text and "![a](findings/a.png)" in text and "--tiny" in text
    assert "![c](findings/c.png)" in text and "![b]" not in text
    assert (tmp_path / "findings" / "a.png").stat().st_size > 1000 and not (tmp_path / "findings" / "b.png").exists()
    assert (tmp_path / "findings" / "c.png").stat().st_size > 1000


def test_readme_lists_every_published_claim_under_its_verdict_and_the_total_cpu_minutes():
    root = Path(__file__).resolve().parent.parent
    claims = json.loads((root / "docs" / "findings.json").read_text())["claims"]
    assert all(claim["budget"] == "full" for claim in claims)  # a --tiny run must not be published
    section = (root / "README.md").read_text().split("## The seed papers' claims, re-run here")[1].split("\n## ")[0]
    listed = {}
    for line in section.replace("\n  ", " ").splitlines():
        if line.startswith("- **"):
            verdict, names = line[4:].split("**:")
            listed.update({name.strip(): verdict for group in names.split(",") for name in group.split("/")
                           if name.strip() != "none"})
    assert listed == {claim["id"]: claim["verdict"] for claim in claims}
    assert set(listed.values()) <= set(VERDICTS)
    distinct = [claim for claim in claims if not claim.get("variant_of")]
    assert f"re-runs {len(distinct)} of their claims" in section and f"{len(claims)} experiments" in section
    assert f"{sum(claim['cpu_minutes'] for claim in claims):.0f} CPU minutes in all" in section


def test_report_made_again_from_finished_runs_keeps_the_cpu_minutes_that_trained_them_and_a_redesign_its_own(
        tmp_path):
    def record(minutes: float, seeds: list[int]) -> dict:
        return {"id": "a", "seed": "s.txt", "section": "1", "statement": "s", "paper_figure": "p", "figure": "f",
                "value": 1.0, "low": 0.5, "high": 1.5, "verdict": "reproduced", "rule": "r", "details": {},
                "curves": {},
                "budget": "tiny", "seeds": seeds, "cpu_minutes": minutes, "command": "c a"}

    def minutes() -> float:
        return json.loads((tmp_path / "findings.json").read_text())["claims"][0]["cpu_minutes"]

    write_report([record(40.0, [0, 1])], tmp_path)
    write_report([record(0.1, [0, 1])], tmp_path)
    assert minutes() == 40.0
    write_report([record(0.2, [0, 1, 2])], tmp_path)  # other seeds: a new experiment, its own cost
    assert minutes() == 0.2
    write_report([record(0.15, [0, 1, 2]), record(30.0, [0, 1, 2])], tmp_path)  # redesigned arms trained anew
    assert minutes() == 30.0


def test_tiny_study_runs_claims_that_share_runs_and_writes_the_findings(tmp_path, monkeypatch, capsys):
    from train.__main__ import main

    monkeypatch.setenv("VLM_DEMO_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "docs"
    status = main(["study", "linear-full-rank", "nearest-token-destroys", "--tiny", "--root", str(tmp_path / "runs"),
                   "--out", str(out)])
    assert status == 0
    claims = {c["id"]: c for c in json.loads((out / "findings.json").read_text())["claims"]}
    assert set(claims) == {"linear-full-rank", "nearest-token-destroys"}
    for claim in claims.values():
        assert claim["verdict"] in VERDICTS and claim["budget"] == "tiny" and claim["seeds"] == [0, 1]
        assert claim["command"] == f"python -m train study {claim['id']} --seeds 2 --tiny"
    rank = claims["linear-full-rank"]["details"]["change"]
    assert len(rank) == 2 and all(c["full_rank"] == 32 for c in rank)  # 1 token x the tiny LLM's width
    cider = claims["nearest-token-destroys"]["details"]["cider"]
    assert set(cider) == {"real", "nearest", "none"} and all(len(v) == 2 for v in cider.values())
    assert sorted(p.name for p in (tmp_path / "runs" / "runs" / "linear-k1").iterdir()) == ["seed-0", "seed-1"]
    assert "| linear-full-rank |" in (out / "findings.md").read_text()
    assert main(["study", "no-such-claim"]) == 2 and "unknown claim" in capsys.readouterr().err


def test_the_full_rank_cut_off_is_a_random_matrix_of_the_rank_the_training_inputs_allow():
    from train.study.claims import RANK_MARGIN, TRAINING_INPUTS, null_shares, rank_verdict

    nulls = null_shares([576, 1280], TRAINING_INPUTS, draws=1)
    assert 0.92 < nulls["gaussian"] < 0.95 and abs(1 - RANK_MARGIN - nulls["random_of_data_rank"]) < 0.005
    change = [{"numerical_rank": 576, "full_rank": 576}] * 3
    assert rank_verdict({"change": change, "share": {"low": 0.46, "high": 0.49}}) == "not reproduced"  # round 1
    assert rank_verdict({"change": change, "share": {"low": 0.60, "high": 0.70}}) == "reproduced"
    assert rank_verdict({"change": change, "share": {"low": 0.55, "high": 0.65}}) == "inconclusive"


def test_the_scale_ladder_multiplies_steps_and_data_and_keeps_its_runs_and_report_apart(tmp_path, capsys):
    import argparse

    from train.config import load_config
    from train.study.cli import budget, folders, main

    ladder = budget(False, tmp_path / "runs-x4", None, 4)
    config = load_config(None, ladder.base)
    assert ladder.name == "full-x4" and ladder.seeds == [0, 1]
    assert config.train.max_steps == 4 * load_config(None, budget(False, tmp_path, None).base).train.max_steps
    assert config.data.train[0]["count"] == 1600 and ladder.command("k-tokens").endswith("--seeds 2 --scale 4")
    args = argparse.Namespace(root=str(tmp_path / "study"), out=str(tmp_path / "docs"), tiny=False, scale=4)
    assert folders(args) == (tmp_path / "study-x4", tmp_path / "docs" / "scale-x4")
    assert main(["k-tokens", "--tiny", "--scale", "4"]) == 2 and "--scale" in capsys.readouterr().err
