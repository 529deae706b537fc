"""PaLM2-VAdapter's progressive recipe on tiny configs: the tiny LM decodes captions without the big LLM (stage 1),
then trains as the adapter through the LLM (stage 2); optionally it starts from the LLM's first layers."""

from __future__ import annotations

import pytest
import torch
from study_helpers import TINYLM, metrics, overrides, run_stage, weights

from vlm_demo.adapters import build_adapter

COMMON = {"encoder": "fake", "token_dim": 16, "num_encoder_tokens": 9, "llm": "tiny-llama", "llm_hidden": 32}
MATCHING = {"vocab_size": 23, "lm_width": 32, "lm_heads": 4, "lm_kv_heads": 2, "lm_intermediate": 64,
            "lm_layers": 1, "num_latents": 4}


def test_decoder_stage_trains_the_tiny_lm_without_running_the_big_llm(tiny_llm_dir, tmp_path, monkeypatch):
    import train.stage_inputs

    real_load = train.stage_inputs.load_llm

    def load_without_forward(*args, **kwargs):
        llm = real_load(*args, **kwargs)

        def forbidden(*a, **k):
            raise AssertionError("the big LLM must not run in the decoder stage")

        llm.model.forward = forbidden
        return llm

    monkeypatch.setattr(train.stage_inputs, "load_llm", load_without_forward)
    args = overrides(tiny_llm_dir, tmp_path / "decoder", *TINYLM, "train.max_steps=8", "train.lr=3e-3")
    stage1 = run_stage("decoder", args, tmp_path / "cache")
    start = run_stage("decoder", overrides(tiny_llm_dir, tmp_path / "start", *TINYLM, "train.max_steps=1",
                                           "train.lr=1e-12"), tmp_path / "cache")
    trained, initial = weights(stage1), weights(start)
    layer = "lm.model.layers.0.mlp.up_proj.weight"
    assert not torch.equal(trained[layer], initial[layer])
    assert torch.equal(trained["output_proj.weight"], initial["output_proj.weight"])  # stage 2 trains it
    losses = [row["loss"] for row in metrics(tmp_path / "decoder")]
    assert len(losses) == 8 and losses[-1] < losses[0]


def test_caption_stage_continues_from_the_decoder_stage_and_trains_the_projection(tiny_llm_dir, tmp_path):
    stage1 = run_stage("decoder", overrides(tiny_llm_dir, tmp_path / "decoder", *TINYLM), tmp_path / "cache")
    stage2 = run_stage("caption", overrides(tiny_llm_dir, tmp_path / "caption", f'model.init_from="{stage1}"'),
                       tmp_path / "cache")
    before, after = weights(stage1), weights(stage2)
    assert not torch.equal(before["output_proj.weight"], after["output_proj.weight"])
    assert before.keys() == after.keys()


def test_tiny_lm_starts_from_the_first_layers_of_the_llm(tiny_llm):
    adapter = build_adapter("tinylm", **COMMON, **MATCHING, init_from_llm=True)
    adapter.start_from(None, tiny_llm)
    source = tiny_llm.model.model
    assert torch.equal(adapter.lm.model.embed_tokens.weight, source.embed_tokens.weight)
    ours, theirs = adapter.lm.model.layers[0].state_dict(), source.layers[0].state_dict()
    assert all(torch.equal(ours[key], theirs[key]) for key in theirs)
    fresh = build_adapter("tinylm", **COMMON, **MATCHING)
    fresh.start_from(None, tiny_llm)  # without the option nothing is copied
    assert not torch.equal(fresh.lm.model.embed_tokens.weight, source.embed_tokens.weight)


def test_starting_from_an_llm_of_another_shape_names_the_options_to_set(tiny_llm):
    adapter = build_adapter("tinylm", **COMMON, **{**MATCHING, "lm_intermediate": 128}, init_from_llm=True)
    with pytest.raises(ValueError, match="lm_intermediate"):
        adapter.start_from(None, tiny_llm)
