"""The headline claims the first round left untested, on the --tiny budget, and the automatic judge of open-ended
answers that stands in for the paper's manual one."""

from __future__ import annotations

import pytest
from study_helpers import tiny_study

from train.study import VERDICTS, run_claim
from train.study.claims_headlines import says_only


def test_an_open_ended_answer_counts_when_it_says_the_right_answer_and_no_other():
    positions = {"top", "left", "top left", "centre"}
    assert says_only("The square is at the top left.", "top left", positions)  # "top" and "left" are inside it
    assert not says_only("It is at the top left.", "left", positions)
    assert not says_only("A red or a blue circle.", "red", {"red", "blue", "green"})
    assert says_only("There are two shapes.", "two", {"one", "two", "three"})
    assert not says_only("A picture of shapes.", "two", {"one", "two", "three"})


@pytest.fixture(scope="module")
def budget(study_root):
    import train.study.claims_headlines  # noqa: F401 - registers them

    with tiny_study(study_root, seeds=2) as budget:
        yield budget


def test_zero_shot_vqa_asks_the_caption_only_adapter_with_and_without_its_image_token(budget):
    record = run_claim("zero-shot-vqa", budget)
    assert record["verdict"] in VERDICTS
    details = record["details"]
    assert record["value"] == pytest.approx(details["with_image"] - details["blind"])
    assert f"{details['with_image']:.3f}" in record["figure"] and f"{details['blind']:.3f}" in record["figure"]
    assert details["questions_per_seed"] > 0 and set(details["per_type"]) <= {"count", "colour", "shape", "position"}
    asked = {path.parent for path in (budget.root / "runs" / "caption-only-linear-k1").rglob("eval-none.json")}
    assert len(asked) == 2 and all((folder / "eval.json").is_file() for folder in asked)  # one run per seed
