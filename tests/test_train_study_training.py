"""The TerraAlign training claims on the --tiny budget: each runs end to end, shares its runs with the others through
the sweep's folders, and writes a finding whose figure carries the runs' numbers."""

from __future__ import annotations

import json
import statistics

import pytest
from study_helpers import numbers_in, tiny_study

from train.study import VERDICTS, run_claim
from train.study.power import HIERARCHICAL, OVER_SEEDS
from train.study.runs import convergence


@pytest.fixture(scope="module")
def budget(study_root):
    import train.study.claims_training  # noqa: F401 - registers them

    with tiny_study(study_root, seeds=2) as budget:
        yield budget


def check(record: dict, budget, digits: int = 3) -> None:
    assert record["verdict"] in VERDICTS and record["rule"] and record["seeds"] == [0, 1]
    assert f"{record['value']:+.{digits}f}" in record["figure"] or f"{record['value']:.{digits}f}" in record["figure"]
    assert record["command"] == f"python -m train study {record['id']} --seeds 2 --tiny"


def test_emd_prealign_compares_stage_two_of_the_same_family_with_and_without_the_align_stage(budget):
    record = run_claim("emd-prealign", budget)
    check(record, budget)
    details = record["details"]
    assert len(details["final"]) == 2 and all(len(arm) == 2 for arm in details["final"])
    runs = budget.root / "runs"
    items = [[json.loads((runs / arm / f"seed-{s}" / stage / "val_items.json").read_text())["losses"] for s in (0, 1)]
             for arm, stage in (("align-attention-qa", "1-caption"), ("qa-attention", "0-caption"))]
    assert all(len(losses) == 3 for arm in items for losses in arm)  # the budget's 3 validation images
    assert record["value"] == pytest.approx(sum(statistics.fmean(b) - statistics.fmean(a)
                                                for a, b in zip(*items)) / 2)
    assert details["final_gap"]["method"] == HIERARCHICAL and HIERARCHICAL in record["interval_method"]
    assert set(record["curves"]) == {"caption only", "EMD align, then caption"}
    chained = sorted(p.name for p in (runs / "align-attention-qa" / "seed-0").iterdir())
    assert chained == ["1-caption"] and (runs / "align-attention" / "seed-0" / "0-align" / "summary.json").is_file()
    steps, _ = record["curves"]["caption only"]
    assert steps == [0, 2, 4]  # validated twice as often as the budget's train.val_every=4
    assert f"{details['step0_val_loss']['caption only']:.2f} without" in record["figure"]


def test_align_only_scores_the_align_stage_against_the_blind_baseline_and_the_caption_run(budget):
    record = run_claim("align-only", budget)
    check(record, budget)
    cider = record["details"]["cider"]
    assert set(cider) == {"align-only", "align-only, no image", "align-only, thesis prompt", "caption run"}
    assert all(len(scores) == 2 for scores in cider.values())
    assert f"{sum(cider['caption run']) / 2:.3f}" in record["figure"]
    folder = budget.root / "runs" / "align-mlp" / "seed-0" / "0-align"
    assert {"eval.json", "eval-none.json", "eval-real-prompt.json"} <= {p.name for p in folder.iterdir()}


def test_drift_reads_every_epoch_snapshot_of_the_shared_align_run(budget):
    record = run_claim("drift-over-epochs", budget)
    check(record, budget)
    per_seed = record["details"]["per_seed"]
    assert [row["snapshot"] for row in per_seed[0]] == ["step-0000000", "epoch-001", "epoch-002", "epoch-003",
                                                        "epoch-004"]
    assert all(-1 <= row[key] <= 1 for rows in per_seed for row in rows
               for key in ("caption_cosine", "other_caption_cosine"))
    steps, values = record["curves"]["to another caption's tokens"]
    assert steps == [0, 1, 2, 3, 4] and round(values[0], 3) in numbers_in(record["figure"])
    assert record["interval_method"] == HIERARCHICAL and "caption_cosine_items" not in per_seed[0][0]
    assert record["value"] == pytest.approx(sum(r[-1]["other_caption_cosine"] - r[0]["other_caption_cosine"]
                                                for r in per_seed) / 2)  # the measure the loss does not optimise


def test_another_images_caption_is_never_the_images_own_caption_text():
    from train.study.claims_training import other_captions

    samples = [type("S", (), {"target": text})() for text in ["a", "a", "b", "c", "a"]]
    assert all(other != sample.target for sample, other in zip(samples, other_captions(samples)))


def test_convergence_pairs_seeds_and_counts_steps_to_a_threshold_every_run_reaches(tmp_path):
    def run(name: str, losses: list[float]):
        folder = tmp_path / name
        folder.mkdir()
        rows = [{"step": 10 * i, "val_loss": v} for i, v in enumerate(losses)]
        (folder / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
        return folder

    fast = [run("a0", [3.0, 1.0, 0.9]), run("a1", [3.0, 1.2, 1.0])]
    slow_ = [run("b0", [3.0, 2.0, 1.0]), run("b1", [3.0, 2.5, 1.2])]
    result = convergence(fast, slow_)
    assert result["threshold"] == pytest.approx(1.05 * 1.2)
    assert result["steps_to_threshold"] == [[10.0, 10.0], [20.0, 20.0]]
    assert result["steps_gap"]["mean"] == 10 and result["final_gap"]["mean"] == pytest.approx(0.15)
    assert result["final_gap"]["method"] == OVER_SEEDS  # runs without their config: one loss per seed
