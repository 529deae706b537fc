"""Every adapter family: output shape, gradients, save/load round trip, refusal of wrong checkpoints."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from tests.conftest import fake_features
from vlm_demo.adapters import ADAPTERS, CheckpointError, build_adapter, check_compatible, load_adapter

COMMON = dict(encoder="test-encoder", token_dim=64, num_encoder_tokens=49, stage_dims=[8, 16, 32, 64],
              llm="tiny-llama", llm_hidden=32)
SMALL = {  # family -> (small options, expected number of output tokens)
    "linear": ({"num_tokens": 5}, 5),
    "mlp": ({"stage_features": [0, 2], "stage_subgrid": [4, 1], "input_norm": True}, 49),
    "attention": ({"width": 32, "num_blocks": 2}, 49),
    "query": ({"num_queries": 8, "width": 32, "num_blocks": 2}, 8),
    "perceiver": ({"num_latents": 6, "width": 32, "num_heads": 4}, 6),
    "multistage": ({"version": "v4", "proj_dim": 8, "fusion_dim": 16, "grid_size": 3, "transformer_heads": 4}, 9),
    "tinylm": ({"vocab_size": 100, "lm_width": 32, "lm_layers": 2, "num_latents": 4}, 4),
    "label": ({"num_classes": 10, "top_k": 2, "tokens_per_class": 3}, 6),
}


def test_every_registered_family_is_covered():
    assert set(SMALL) == set(ADAPTERS)


@pytest.mark.parametrize("kind", sorted(SMALL))
def test_output_has_expected_token_count_and_llm_width(kind):
    options, expected = SMALL[kind]
    adapter = build_adapter(kind, **COMMON, **options)
    out = adapter(fake_features(batch=3))
    assert out.shape == (3, expected, 32)
    assert adapter.num_output_tokens == expected
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("version", ["v1", "v2", "v3", "v4"])
def test_multistage_versions_differ_in_structure(version):
    options = {**SMALL["multistage"][0], "version": version}
    adapter = build_adapter("multistage", **COMMON, **options)
    assert adapter(fake_features()).shape == (2, 9, 32)
    has_3x3 = any(getattr(m, "kernel_size", None) == (3, 3) for m in adapter.fusion)
    assert has_3x3 == (version in ("v3", "v4"))
    assert hasattr(adapter, "transformer") == (version in ("v2", "v4"))


def test_multistage_can_fuse_only_chosen_stage_maps():
    options = {**SMALL["multistage"][0], "version": "v1", "stages": [3]}  # the last map alone: a single embedding
    adapter = build_adapter("multistage", **COMMON, **options).eval()
    assert [p.in_channels for p in adapter.stage_proj] == [64] and adapter.fusion[0].in_channels == 8
    features = fake_features()
    changed = fake_features()
    changed.stages[-1] = features.stages[-1]
    assert torch.equal(adapter(features), adapter(changed))  # the earlier maps are not read
    assert load_adapter_round_trip(adapter).chosen == [3]
    with pytest.raises(ValueError, match="stages"):
        build_adapter("multistage", **COMMON, **{**options, "stages": [4]})


def load_adapter_round_trip(adapter):
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        adapter.save_pretrained(folder)
        return load_adapter(folder)


@pytest.mark.parametrize("kind", sorted(SMALL))
def test_gradients_reach_every_parameter(kind):
    adapter = build_adapter(kind, **COMMON, **SMALL[kind][0])
    adapter(fake_features()).pow(2).mean().backward()
    unused = {"tinylm": ("lm.lm_head", "lm.model.embed_tokens")}.get(kind, ())  # tied table: stage 1 only
    for name, parameter in adapter.named_parameters():
        if name.startswith(unused) or not parameter.requires_grad:  # e.g. the label family's frozen classifier
            continue
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_tinylm_stage_one_caption_loss_trains_the_language_model():
    adapter = build_adapter("tinylm", **COMMON, **SMALL["tinylm"][0])
    ids = torch.randint(0, 100, (2, 7))
    loss = adapter.language_model_loss(fake_features(), ids, torch.ones_like(ids))
    loss.backward()
    assert loss.item() > 0 and adapter.lm.model.embed_tokens.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("kind", sorted(SMALL))
def test_save_and_reload_gives_identical_outputs(kind, tmp_path):
    adapter = build_adapter(kind, **COMMON, **SMALL[kind][0]).eval()
    adapter.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix in (".json", ".safetensors")) == [
        "config.json", "model.safetensors"]
    reloaded = load_adapter(tmp_path)
    features = fake_features()
    assert type(reloaded) is type(adapter)
    assert torch.allclose(reloaded(features), adapter(features), atol=1e-6)


def test_checkpoint_for_another_llm_is_refused_naming_both_sides():
    adapter = build_adapter("mlp", **COMMON)
    with pytest.raises(CheckpointError, match=r"LLM: checkpoint 'tiny-llama' vs combination 'other-llm'.*hidden size"):
        check_compatible(adapter.config, "test-encoder", 64, "other-llm", 48)


def test_checkpoint_for_another_encoder_is_refused():
    adapter = build_adapter("mlp", **COMMON)
    with pytest.raises(CheckpointError, match=r"encoder: checkpoint 'test-encoder' vs combination 'clip'"):
        check_compatible(adapter.config, "clip", 768, "tiny-llama", 32)


def test_folder_without_config_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="no config.json"):
        load_adapter(tmp_path)


def test_pickle_checkpoint_is_never_read(tmp_path):
    build_adapter("mlp", **COMMON).save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    torch.save({"x": torch.zeros(1)}, tmp_path / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="only safetensors"):
        load_adapter(tmp_path)


def test_damaged_weights_file_is_refused(tmp_path):
    build_adapter("mlp", **COMMON).save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_adapter(tmp_path)


def test_weights_of_another_shape_are_refused(tmp_path):
    build_adapter("mlp", **COMMON).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "llm_hidden": 48}))
    with pytest.raises(CheckpointError):
        load_adapter(tmp_path)


def test_unknown_family_and_unknown_config_keys_are_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"kind": "magic"}))
    with pytest.raises(CheckpointError, match="unknown adapter family 'magic'"):
        load_adapter(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"kind": "mlp", "colour": "red"}))
    with pytest.raises(CheckpointError, match="unknown keys: colour"):
        load_adapter(tmp_path)


def test_label_tokens_start_from_the_class_names_and_the_encoders_own_head(tiny_llm):
    from vlm_demo.encoders import ClassHead

    names = ("red circle", "blue square", "a")
    head = ClassHead(torch.randn(3, 64), torch.tensor([0.0, 5.0, 0.0]), names)
    encoder = type("Encoder", (), {"name": "test-encoder", "class_head": head})()
    adapter = build_adapter("label", **{**COMMON, "llm_hidden": 32}, num_classes=3, top_k=1, tokens_per_class=3)
    adapter.start_from(encoder, tiny_llm)
    embed = tiny_llm.model.get_input_embeddings().weight
    ids = tiny_llm.tokenizer(" blue square", add_special_tokens=False)["input_ids"]
    assert ids == [tiny_llm.tokenizer.convert_tokens_to_ids(w) for w in ("blue", "square")]
    comma_padded = tiny_llm.tokenizer(",", add_special_tokens=False)["input_ids"]
    assert torch.equal(adapter.labels.table[1, :2], embed[ids])
    assert len(comma_padded) == 1 and torch.equal(adapter.labels.table[1, 2], embed[comma_padded[0]])
    features = fake_features(batch=1)
    features.pooled.zero_()  # the bias alone decides: class 1 ("blue square") is the top class
    assert torch.allclose(adapter(features)[0], adapter.labels.table[1])
    assert adapter.labels.head.weight.requires_grad is False and adapter.labels.table.requires_grad


def test_a_label_table_kept_at_the_names_is_not_trained(tiny_llm):
    from vlm_demo.encoders import ClassHead

    encoder = type("Encoder", (), {"name": "test-encoder",
                                   "class_head": ClassHead(torch.randn(3, 64), torch.zeros(3), ("a", "b", "c"))})()
    adapter = build_adapter("label", **{**COMMON, "llm_hidden": 32}, num_classes=3, top_k=1, train_table=False)
    adapter.start_from(encoder, tiny_llm)
    trainable = {name for name, parameter in adapter.named_parameters() if parameter.requires_grad}
    assert trainable == {"labels.rank", "labels.confidence"}
    assert adapter.config.train_table is False and not adapter.labels.table.requires_grad


def test_mlp_can_append_the_classifiers_label_tokens():
    adapter = build_adapter("mlp", **COMMON, class_tokens=2, tokens_per_class=3, num_classes=10)
    assert adapter.config.needs == {"class_head"} and adapter.num_output_tokens == 49 + 6
    assert adapter(fake_features(batch=2)).shape == (2, 55, 32)
    kept = build_adapter("mlp", **COMMON, class_tokens=2, num_classes=10, train_table=False, everyday_names=True)
    assert not kept.labels.table.requires_grad and kept.labels.everyday and adapter.labels.table.requires_grad


def test_mlp_merges_each_square_of_patch_tokens_and_keeps_the_class_token_apart():
    vit = {**COMMON, "num_encoder_tokens": 1 + 16, "stage_dims": []}  # a class token before a 4x4 patch grid
    adapter = build_adapter("mlp", **vit, token_merge=2).eval()
    features = fake_features(batch=2, tokens=17)
    assert adapter.num_output_tokens == 1 + 4 and adapter(features).shape == (2, 5, 32)
    merged = adapter.merged(features.tokens)
    assert torch.equal(merged[:, 0], features.tokens[:, 0].repeat(1, 4))
    top_left = features.tokens[:, 1:].reshape(2, 4, 4, 64)[:, :2, :2]  # patches (0,0) (0,1) (1,0) (1,1)
    assert sorted(merged[0, 1].tolist()) == sorted(top_left[0].flatten().tolist())
    changed = features.tokens.clone()
    changed[:, 1 + 15] += 1  # the bottom-right patch changes only the last merged token
    assert torch.equal(adapter(features)[:, :4], adapter(dataclasses.replace(features, tokens=changed))[:, :4])
    with pytest.raises(ValueError, match="token_merge 3 must divide"):
        build_adapter("mlp", **vit, token_merge=3)


@pytest.mark.parametrize("change, words", [
    ({"kind": ["mlp"]}, "has no 'kind' field"),
    ({"token_dim": "1280"}, "'token_dim' must be an integer"),
    ({"stage_features": [0, "2"]}, "'stage_features' must be a list of integers"),
    ({"hidden_multiplier": -1}, "'hidden_multiplier' must be between 0 and"),
    ({"input_norm": "yes"}, "'input_norm' must be true or false"),
    ({"llm_hidden": 48}, "'fc1.weight' would be"),
])
def test_tampered_config_is_one_clear_checkpoint_error(tmp_path, change, words):
    build_adapter("mlp", **COMMON, stage_features=[0, 2]).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(CheckpointError, match=words) as caught:
        load_adapter(tmp_path)
    assert len(str(caught.value).splitlines()) == 1


def test_config_that_would_build_a_huge_adapter_is_refused_before_allocating(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    build_adapter("mlp", **COMMON).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "hidden_multiplier": 20000}))  # ~250 MB of weights
    code = ("import sys\nfrom vlm_demo.adapters import CheckpointError, load_adapter\n"
            "kb = lambda key: next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith(key))\n"
            "open('/proc/self/clear_refs', 'w').write('5')\nstart = kb('VmRSS')\n"
            "try:\n    load_adapter(sys.argv[1]); outcome = 'loaded'\n"
            "except CheckpointError as error:\n    outcome = str(error)\n"
            "print((kb('VmHWM') - start) / 1024, outcome)\n")
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120,
                            cwd=root, env={**os.environ, "PYTHONPATH": str(root)})
    peak, outcome = result.stdout.strip().split(" ", 1)
    assert "does not match model.safetensors" in outcome and float(peak) < 50, result.stdout + result.stderr


def test_label_tokens_can_start_from_the_everyday_phrases(tiny_llm):
    from vlm_demo.adapters.label import everyday_names
    from vlm_demo.encoders import ClassHead

    names = tuple(f"class {index}" for index in range(1000))
    encoder = type("Encoder", (), {"name": "test-encoder",
                                   "class_head": ClassHead(torch.randn(1000, 64), torch.zeros(1000), names)})()
    adapter = build_adapter("label", **{**COMMON, "llm_hidden": 32}, top_k=1, tokens_per_class=8, everyday_names=True)
    adapter.start_from(encoder, tiny_llm)
    embed = tiny_llm.model.get_input_embeddings().weight
    ids = tiny_llm.tokenizer(" " + everyday_names()[948], add_special_tokens=False)["input_ids"][:8]
    assert everyday_names()[948] == "Granny Smith, a type of apple"
    assert torch.equal(adapter.labels.table[948, :len(ids)], embed[ids])
