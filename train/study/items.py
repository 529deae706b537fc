"""Per-item scores of a study run's evaluation, for the bootstrap over seeds and test items: each caption's CIDEr-D
and each question's exact match, read from the answers the evaluation kept (`<results>_predictions.jsonl`) against
the evaluation samples' references and labels (gathered again, in the same order), and each image's feature MSE
to a teacher's tokens."""

from __future__ import annotations

import json
from pathlib import Path

from train.study import Budget
from train.study.runs import eval_of, run_config


def answered(folder: Path, budget: Budget, image_tokens: str = "real", *extra: str) -> list[tuple]:
    """(sample, answer) for every evaluation item of the run (evaluated first if it was not)."""
    from train.evaluate import results_name
    from train.loop import gather_samples

    eval_of(folder, budget, image_tokens, *extra)
    config = run_config(folder, budget, f'eval.image_tokens="{image_tokens}"', *extra)
    lines = (folder / f"{results_name(config)}_predictions.jsonl").read_text().splitlines()
    answers = [json.loads(line)["answer"] for line in lines if line.strip()]
    samples = gather_samples(config.data.eval, "test")
    if len(samples) != len(answers):
        raise ValueError(f"{folder}: {len(answers)} kept answers for {len(samples)} evaluation samples")
    return list(zip(samples, answers))


def cider_items(folder: Path, budget: Budget, image_tokens: str = "real", *extra: str) -> list[float]:
    """Each held-out caption's CIDEr-D, in evaluation order."""
    from train.evaluate import caption_item_scores

    pairs = [(s, a) for s, a in answered(folder, budget, image_tokens, *extra) if s.task == "caption"]
    return caption_item_scores([a for _, a in pairs], [s.references or [s.target] for s, _ in pairs])


def vqa_items(folder: Path, budget: Budget, *extra: str) -> list[tuple[str, float]]:
    """(question type, 1.0 if the answer matched exactly else 0.0) for each held-out question, in evaluation order."""
    from train.evaluate import answer_matches

    return [(s.qtype, float(answer_matches(a, s.label))) for s, a in answered(folder, budget, "real", *extra)
            if s.task == "vqa"]


def mse_items(folder: Path, budget: Budget, *extra: str) -> list[float]:
    """Each evaluation image's feature MSE to the teacher's tokens (computed once: feature_mse_items.json)."""
    from train.evaluate import feature_errors

    kept = folder / "feature_mse_items.json"
    if not kept.is_file():
        kept.write_text(json.dumps(feature_errors(run_config(folder, budget, *extra))))
    return json.loads(kept.read_text())
