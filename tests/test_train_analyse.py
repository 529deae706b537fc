"""Analysis over many images on tiny configs: best cosines against the random baseline, the spectrum of a linear
adapter's weight change since step 0, and components for 80% variance."""

from __future__ import annotations

import json

import pytest
import torch
from study_helpers import overrides, run_stage

from train.analyse import components_summary, cosine_summary, spectra_summary
from vlm_demo import analysis
from vlm_demo.adapters import build_adapter


def test_vocabulary_rows_score_one_and_gaussian_tokens_sit_at_the_random_baseline(tiny_llm):
    vocab = analysis.vocabulary(tiny_llm)
    rows = [vocab.embeddings[3:13], vocab.embeddings[5:15]]
    exact = cosine_summary(rows, vocab, baseline_samples=512)
    assert exact["max_cosine"]["mean"] == pytest.approx(1.0, abs=1e-5) and exact["share_of_tokens_above_baseline"] == 1
    generator = torch.Generator().manual_seed(1)
    noise = [torch.randn(200, vocab.embeddings.shape[1], generator=generator) for _ in range(3)]
    random = cosine_summary(noise, vocab, baseline_samples=512)
    assert random["max_cosine"]["mean"] == pytest.approx(random["random_baseline"]["mean"], abs=0.03)


def test_a_rank_two_change_has_numerical_rank_two_and_full_rank_share_reported():
    common = {"encoder": "fake", "token_dim": 16, "num_encoder_tokens": 9, "llm": "tiny", "llm_hidden": 8}
    start = build_adapter("linear", **common, num_tokens=2)
    trained = build_adapter("linear", **common, num_tokens=2)
    trained.load_state_dict(start.state_dict())
    with torch.no_grad():
        trained.proj.weight += torch.randn(16, 2) @ torch.randn(2, 16)
    (change,) = spectra_summary(trained, start)
    assert change["numerical_rank"] == 2 and change["full_rank"] == 16
    (weights,) = spectra_summary(trained)
    assert weights["numerical_rank"] == 16


def test_components_count_what_the_tokens_span():
    flat = [torch.randn(30, 1) @ torch.randn(1, 12) for _ in range(3)]  # each image's tokens on one line
    summary = components_summary(flat)
    assert summary["per_image"]["mean"] == 1 and summary["pooled"] >= 2


def test_analyse_command_writes_all_three_for_a_trained_linear_adapter(tiny_llm_dir, tmp_path, capsys):
    from train.__main__ import main

    arguments = overrides(tiny_llm_dir, tmp_path / "run", 'model.adapter="linear"',
                          "model.adapter_options={num_tokens=2}", "train.snapshots=true", "train.lr=1e-2")
    run_stage("caption", arguments, tmp_path / "cache")
    assert main(["analyse", *arguments]) == 0
    record = json.loads((tmp_path / "run" / "analysis.json").read_text())
    assert json.loads(capsys.readouterr().out) == record
    assert record["images"] == 3 and record["cosines"]["max_cosine"]["n"] == 3 * 2
    assert record["spectra"]["of"].startswith("change since")
    assert record["spectra"]["layers"][0]["full_rank"] == 64  # 2 tokens x 32 wide
    assert 1 <= record["components_for_80_percent"]["pooled"] <= 6
    assert record["components_for_80_percent"]["largest_over_median_norm"]["mean"] >= 1.0
