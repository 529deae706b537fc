"""Claims that set adapter families side by side: components for 80% variance per family (TerraAlign), attention vs
query vs MLP when asked to classify (TerraAlign), and a pooled-embedding adapter against a per-patch one by question
type (single-FC seed). The families' caption runs on captions plus shapes questions (`arms.qa`) serve all three."""

from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np

from train.study import Budget, Claim, Finding, register
from train.study.arms import EVAL_QUESTIONS, align, qa, qa_eval
from train.study.claims import (
    COMPONENTS_RULE,
    COMPONENTS_SMALLEST,
    SINGLE_FC,
    TERRAALIGN,
    components_of,
    components_verdict,
    norm_spread,
)
from train.study.items import vqa_items
from train.study.power import HIERARCHICAL, OVER_SEEDS, bootstrap_interval, item_rows, seed_interval
from train.study.runs import combined, eval_of, final_runs, show, superiority

FAMILIES = ("mlp", "attention", "query")
PAPER_STAGE = {"mlp": "caption", "attention": "align", "query": "align"}  # where the thesis counted
# As the paper groups them (Table II): a pooled vector keeps what the image is (shape); it misses counts, colours
# and objects off the centre of attention (position).
GIST, DETAILS = ("shape",), ("count", "colour", "position")
TYPES = (*GIST, *DETAILS)
THESIS_COMPONENTS = {"mlp": 68, "attention": 14, "query": 33}
QUESTION_AXES = ("held-out shapes question type", "exact-match accuracy")
MAJORITY = "majority answer"  # the baseline series of the question figures


def components_per_family(budget: Budget) -> Finding:
    """Components for 80% of the image tokens' variance for mlp, attention and query, after the align stage and after
    the caption stage (components-80 is the mlp on captions alone). Full budget: 1 align run per family and seed
    (mlp's shared with align-only, attention's with emd-prealign) and the families' caption runs of
    families-classification: no caption run of its own."""
    after = {"align": final_runs([align(f, budget) for f in FAMILIES], budget),
             "caption": final_runs([qa(f, budget) for f in FAMILIES], budget)}
    found = {f"{family} after {stage}": components_of(after[stage][f"{prefix}-{family}"], budget)
             for stage, prefix in (("align", "align"), ("caption", "qa")) for family in FAMILIES}
    paper = {family: found[f"{family} after {PAPER_STAGE[family]}"] for family in FAMILIES}
    fewest = min(paper.values(), key=lambda cell: cell["count"]["mean"])["count"]
    cells = "; ".join(f"{name} {show(cell['count'], 1, signed=False)} (first two {cell['first_two_share']:.0%}"
                      f"{norm_spread(cell)})" for name, cell in found.items())
    return Finding(
        figure=f"components for 80% of the image tokens' variance: {cells}",
        value=fewest["mean"], low=fewest["low"], high=fewest["high"], interval_method=OVER_SEEDS,
        details={"cells": {name: {k: v for k, v in cell.items() if k != "per_seed"} for name, cell in found.items()},
                 "per_seed": {name: cell["per_seed"] for name, cell in found.items()},
                 "paper_stage": PAPER_STAGE, "bar_reference": "thesis",
                 "bar_axes": ("family (thesis: mlp after fine-tuning, the others after the align stage)",
                              "components for 80%")},
        bars={**{f"after {stage}": {family: found[f"{family} after {stage}"]["count"] for family in FAMILIES}
                 for stage in ("align", "caption")},
              "thesis": THESIS_COMPONENTS})


def paper_cells(details: dict) -> list[dict]:
    """Each family's cell at the thesis's stage."""
    return [details["cells"][f"{family} after {PAPER_STAGE[family]}"] for family in FAMILIES]


def per_family_verdict(details: dict) -> str:
    return combined([components_verdict(cell["count"], cell["first_two_share"]) for cell in paper_cells(details)])


def asked(folders: list[Path], budget: Budget) -> list[dict]:
    """Each seed's evaluation on captions and questions (real image tokens; computed once)."""
    return [eval_of(folder, budget, "real", *qa_eval(budget)) for folder in folders]


def type_accuracy(metrics: dict, types: tuple[str, ...]) -> float:
    """Mean exact-match accuracy over the question types the evaluation asked."""
    scores = [metrics["vqa_exact_match"][t] for t in types if t in metrics["vqa_exact_match"]]
    if not scores:
        raise ValueError(f"the evaluation asked none of {types}; raise data.eval's vqa_per_image")
    return statistics.fmean(scores)


def per_type(evals: list[dict]) -> dict[str, dict]:
    """Exact-match accuracy per question type (and overall): mean and bootstrap interval over seeds."""
    return {t: seed_interval([m["vqa_exact_match"][t] for m in evals]) for t in evals[0]["vqa_exact_match"]}


def by_question_type(accuracies: dict[str, dict[str, dict]], baseline: dict[str, float]) -> tuple[dict, dict]:
    """The figure's bars (each adapter's accuracy per question type with its interval, the majority answer as the
    grey baseline) and the details that go with them (mean accuracies per type, axis names)."""
    details = {"per_type": {name: {t: iv["mean"] for t, iv in types.items()} for name, types in accuracies.items()},
               "majority_answer": baseline, "bar_axes": QUESTION_AXES, "bar_reference": MAJORITY}
    return {**accuracies, MAJORITY: baseline}, details


def correct_items(folders: list[Path], budget: Budget) -> list[list[tuple[str, float]]]:
    """Each seed's (question type, exact match) per held-out question."""
    return [vqa_items(folder, budget, *qa_eval(budget)) for folder in folders]


def matched(first: list[tuple[str, float]], second: list[tuple[str, float]]) -> np.ndarray:
    """Item rows (first's match, second's match, question type's index in TYPES) of two arms asked alike."""
    if [t for t, _ in first] != [t for t, _ in second]:
        raise ValueError("the two arms were not asked the same questions")
    return np.column_stack([item_rows([v for _, v in first], [v for _, v in second]),
                            [TYPES.index(t) if t in TYPES else -1 for t, _ in first]])


FAMILY_SMALLEST = 0.02  # exact-match accuracy


def families_judged(details: dict) -> list[dict]:
    return [details["minus_mlp"][family] for family in ("attention", "query")]


def families_verdict(details: dict) -> str:
    best = max(statistics.fmean(scores) for scores in details["overall"].values())
    if best < details["majority_answer"]["overall"] + 0.05:
        return "inconclusive"
    return combined([superiority(gap, FAMILY_SMALLEST) for gap in families_judged(details)])


def families_classification(budget: Budget) -> Finding:
    """Attention, query and MLP adapters trained alike (caption stage, frozen LLM, captions plus shapes questions),
    asked about held-out shapes (count, colour, shape, position; exact match of the short answer). The thesis asked
    Food101's class after LoRA fine-tuning; shapes questions are our classification by asking. Full budget: 1 caption
    run per family and seed (shared with emd-prealign and components-per-family)."""
    runs = final_runs([qa(f, budget) for f in FAMILIES], budget)
    evals = {family: asked(runs[f"qa-{family}"], budget) for family in FAMILIES}
    items = {family: correct_items(runs[f"qa-{family}"], budget) for family in FAMILIES}
    overall = {family: [m["vqa_exact_match"]["overall"] for m in evals[family]] for family in FAMILIES}
    baseline = evals["mlp"][0]["vqa_majority_answer_baseline"]
    majority = baseline["overall"]
    gaps = {family: bootstrap_interval([matched(own, mlp) for own, mlp in zip(items[family], items["mlp"])])
            for family in ("attention", "query")}
    bars, shown = by_question_type({family: per_type(evals[family]) for family in FAMILIES}, baseline)
    scores = ", ".join(f"{family} {statistics.fmean(overall[family]):.3f}" for family in FAMILIES)
    return Finding(
        figure=f"shapes questions, exact match: {scores} (majority answer {majority:.3f}); attention minus mlp "
               f"{show(gaps['attention'])}, query minus mlp "
               f"{show(gaps['query'])}",
        value=gaps["attention"]["mean"], low=gaps["attention"]["low"], high=gaps["attention"]["high"],
        interval_method=HIERARCHICAL,
        details={"overall": overall, **shown, "minus_mlp": gaps, "questions_per_image": EVAL_QUESTIONS},
        bars=bars)


def contrast_of(rows: np.ndarray) -> float:
    """(per-patch advantage on the detail types) minus (its advantage on the gist types), each the mean over the
    types of the mean per-question advantage (nan when a group's types are all missing from the rows)."""
    def advantage(types: tuple[str, ...]) -> float:
        means = [np.mean(rows[rows[:, 2] == TYPES.index(t), 0] - rows[rows[:, 2] == TYPES.index(t), 1])
                 for t in types if np.any(rows[:, 2] == TYPES.index(t))]
        return float(np.mean(means)) if means else float("nan")

    return advantage(DETAILS) - advantage(GIST)


POOLED_SMALLEST = 0.05  # exact-match accuracy


def pooled_verdict(details: dict) -> str:
    per_patch, majority = details["per_type"]["per patch (mlp)"], details["majority_answer"]
    if statistics.fmean(per_patch[t] for t in DETAILS) < statistics.fmean(majority[t] for t in DETAILS) + 0.05:
        return "inconclusive"
    return superiority(details["contrast"], POOLED_SMALLEST)


def pooled_vs_per_patch(budget: Budget) -> Finding:
    """A linear adapter on the pooled embedding (one token, the single-FC seed) against an MLP over every patch, both
    trained alike on captions and shapes questions, by question type. Full budget: 1 caption run per seed (qa-linear;
    qa-mlp is families-classification's)."""
    runs = final_runs([qa("linear", budget), qa("mlp", budget)], budget)
    pooled, patches = asked(runs["qa-linear"], budget), asked(runs["qa-mlp"], budget)
    rows = [matched(patch, pool) for patch, pool in zip(correct_items(runs["qa-mlp"], budget),
                                                         correct_items(runs["qa-linear"], budget))]

    def advantage(types: tuple[str, ...]) -> list[float]:
        return [type_accuracy(p, types) - type_accuracy(q, types) for p, q in zip(patches, pooled)]

    details_gap, gist_gap = advantage(DETAILS), advantage(GIST)
    contrast = bootstrap_interval(rows, contrast_of)
    majority = pooled[0]["vqa_majority_answer_baseline"]
    bars, shown = by_question_type({"pooled (linear)": per_type(pooled), "per patch (mlp)": per_type(patches)},
                                   majority)
    return Finding(
        figure=f"per-patch minus pooled accuracy: details ({', '.join(DETAILS)}) {statistics.fmean(details_gap):+.3f}, "
               f"gist ({', '.join(GIST)}) {statistics.fmean(gist_gap):+.3f}; difference {show(contrast)}",
        value=contrast["mean"], low=contrast["low"], high=contrast["high"], interval_method=HIERARCHICAL,
        details={**shown, "details_advantage": details_gap, "gist_advantage": gist_gap, "contrast": contrast},
        bars=bars)


register(Claim("components-per-family", TERRAALIGN, "3.5 Analysis (Simple Adapter, Self Attention, Query Adapter)",
               "every family's image tokens need many principal components for 80% of their variance",
               "68 components (simple MLP adapter, after fine-tuning), 14 (self-attention) and 33 (query adapter) "
               "after pre-training (text only, no figure)", components_per_family,
               kind="superiority", smallest_effect=COMPONENTS_SMALLEST, unit="components",
               effect_why="as components-80: 10 components in all, under the thesis's smallest count (14)",
               rule=f"per family at the thesis's stage (mlp after captioning, attention and query after the align "
                    f"stage): {COMPONENTS_RULE}; reproduced if all three are, not reproduced if any is not, otherwise "
                    "inconclusive. The value is the family with the fewest components",
               judge=per_family_verdict, judged=lambda details: [cell["count"] for cell in paper_cells(details)],
               deviations=(
                   "PCA of the image tokens alone, un-normalised; the thesis ran PCA on image and caption-text "
                   "tokens together",
                   "after 300 steps of the align or caption stage, not the thesis's pre-training and LoRA fine-tuning",
                   "synthetic shapes images, low-dimensional by construction; a few long tokens dominate the "
                   "variance"),
               broken_premise="the counts are of the thesis's joint image-and-text PCA; image tokens alone, on "
                              "low-dimensional synthetic images and dominated by a few long tokens, do not test them",
               variant_of="components-80"))
register(Claim("families-classification", TERRAALIGN, "3.7 Fine-tuning in Food101 (Table 10)",
               "asked to classify, the attention adapter beats the query adapter, which beats the MLP",
               "Table 10: classification accuracy self-attention 83.56%, query 82.86%, MLP 81.52% (Food101)",
               families_classification, kind="superiority", smallest_effect=FAMILY_SMALLEST, unit="accuracy",
               effect_why="2 points of accuracy: the thesis's gaps (83.56 and 82.86 against 81.52%)",
               rule=f"superiority: inconclusive while no family beats the majority-answer baseline by 0.05; "
                    f"reproduced if the paired intervals of attention minus mlp and query minus mlp exact match both "
                    f"lie above 0; not reproduced if either lies wholly below {FAMILY_SMALLEST}; otherwise "
                    "inconclusive",
               judge=families_verdict, judged=families_judged,
               deviations=(
                   "about 200 held-out shapes questions of 4 types instead of Food101's 101 classes (25,250 test "
                   "images)",
                   "no LoRA; 300 caption steps through a frozen SmolLM2-135M",
                   "the paper's families differ by 1-2 points; intervals here are about +-12 points wide")))
register(Claim("pooled-vs-per-patch", SINGLE_FC, "III.A Responses to VQAv2 questions (Table II)",
               "a pooled-embedding adapter gets the gist but misses details that per-patch tokens keep",
               "Table II failure categories (qualitative): counting, non-stereotypical colours, objects off the "
               "centre of attention", pooled_vs_per_patch,
               kind="direction", smallest_effect=POOLED_SMALLEST, unit="accuracy",
               effect_why="5 points of accuracy, our own: the paper's failure categories are qualitative (no size)",
               rule=f"direction: inconclusive while the per-patch adapter answers detail questions no better than "
                    f"the majority answer + 0.05; reproduced if the paired interval of (per-patch advantage on "
                    f"{', '.join(DETAILS)}) minus (its advantage on {', '.join(GIST)}) lies above 0; not reproduced if "
                    f"it lies wholly below {POOLED_SMALLEST}; otherwise inconclusive. Grouped as the paper groups its "
                    "failures (counting, non-stereotypical colours, objects off the centre: details)",
               judge=pooled_verdict, judged=lambda details: [details["contrast"]],
               deviations=(
                   "shapes VQA instead of VQAv2; SmolLM2-135M instead of Mistral-7B",
                   "the gist is the shape question alone; VQAv2's 'what is this' questions have many more answers")))
