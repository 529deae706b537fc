"""`train eval` ablations on tiny configs: image tokens real | nearest | random | none, the majority-answer
baseline for VQA, and a prompt override, each written beside (never over) the plain evaluation."""

from __future__ import annotations

import json

import pytest
import torch
from study_helpers import overrides, run_stage

from train.config import load_config
from train.data import Sample
from train.evaluate import ablated_tokens, evaluate, majority_answers


def test_nearest_tokens_are_vocabulary_rows_and_random_ones_keep_the_norms(tiny_llm):
    table = tiny_llm.vocabulary_embeddings()
    tokens = torch.randn(2, 5, table.shape[1])
    nearest = ablated_tokens(tokens, "nearest", tiny_llm)
    unit = tokens / tokens.norm(dim=-1, keepdim=True)
    best = (unit @ (table / table.norm(dim=-1, keepdim=True).clamp_min(1e-12)).T).argmax(dim=-1)
    assert torch.equal(nearest, table[best])
    shuffled = ablated_tokens(tokens, "random", tiny_llm)
    assert torch.allclose(shuffled.norm(dim=-1), tokens.norm(dim=-1), atol=1e-5)
    assert not torch.allclose(shuffled, tokens)
    assert ablated_tokens(tokens, "none", tiny_llm).shape == (2, 0, table.shape[1])
    assert ablated_tokens(tokens, "real", tiny_llm) is tokens


def test_majority_answer_baseline_per_question_type():
    def vqa(qtype: str, label: str) -> Sample:
        return Sample("x", lambda: None, "?", label, "vqa", qtype=qtype, label=label)

    samples = [vqa("colour", "red"), vqa("colour", "red"), vqa("colour", "blue"), vqa("count", "2")]
    assert majority_answers(samples) == {"colour": pytest.approx(2 / 3), "count": 1.0, "overall": 0.75}


def test_eval_ablations_write_their_own_files_with_the_spliced_tokens_they_promise(tiny_llm_dir, tmp_path,
                                                                                    monkeypatch):
    from vlm_demo.llms import LanguageModel

    arguments = overrides(tiny_llm_dir, tmp_path / "run", "train.max_steps=1")
    run_stage("caption", arguments, tmp_path / "cache")
    plain = evaluate(load_config(None, arguments), progress=False)
    assert "vqa_majority_answer_baseline" in plain and "ablation" not in plain
    seen = []
    original = LanguageModel.splice

    def spy(self, prompts, image_embeds=None, *args, **kwargs):
        seen.append((prompts, None if image_embeds is None else image_embeds.shape[1]))
        return original(self, prompts, image_embeds, *args, **kwargs)

    monkeypatch.setattr(LanguageModel, "splice", spy)
    blind = evaluate(load_config(None, [*arguments, 'eval.image_tokens="none"', 'eval.prompt="what colour"']),
                     progress=False)
    assert blind["ablation"] == {"image_tokens": "none", "prompt": "what colour"}
    assert seen and all(count == 0 and all("what colour" in p for p in prompts) for prompts, count in seen)
    folder = tmp_path / "run"
    assert json.loads((folder / "eval.json").read_text()) == plain
    rows = [json.loads(line) for line in (folder / "eval-none-prompt_predictions.jsonl").read_text().splitlines()]
    assert rows and all(row["prompt"] != "what colour" for row in rows)  # the sample's own prompt is recorded
    evaluate(load_config(None, [*arguments, 'eval.image_tokens="nearest"']), progress=False)
    assert (folder / "eval-nearest.json").is_file()
