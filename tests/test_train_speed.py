"""Training speed paths: the loss from logits at labelled positions only, the precision choice, bf16 training
steps that keep trainable weights fp32, and feature caches kept apart by precision."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import torch

from tests.conftest import fake_features
from train.config import ConfigError, load_config
from train.data.shapes import shapes_samples
from train.features import FeatureCache
from train.stages import Batch
from train.stages.caption import SharedPrefix, caption_stage, full_logits_loss, labelled_loss
from vlm_demo import precision
from vlm_demo.adapters import build_adapter
from vlm_demo.encoders.base import EncoderOutput, VisionEncoder
from vlm_demo.llms import LanguageModel, load_llm

ROOT = Path(__file__).resolve().parent.parent
PROMPTS = ["describe this image .", "what colour is the red circle ?", "what colour ?"]
TARGETS = ["a red circle .", "blue", "the blue square is a square ."]


def _llm(kind: str, tiny_llm: LanguageModel, tiny_llm_dir: Path, dtype: torch.dtype) -> LanguageModel:
    if kind == "qlora":
        llm = load_llm(str(tiny_llm_dir), quantization="4bit", dtype=dtype)
    else:
        llm = LanguageModel(tiny_llm.name, copy.deepcopy(tiny_llm.model).to(dtype), tiny_llm.tokenizer)
    if kind in ("lora", "qlora"):
        from peft import LoraConfig, get_peft_model

        llm.model = get_peft_model(llm.model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0,
                                                         target_modules=["q_proj", "v_proj"]))
        with torch.no_grad():  # a fresh LoRA is a no-op (B = 0); make it change the logits
            for name, parameter in llm.model.named_parameters():
                if "lora_B" in name:
                    parameter.normal_(std=0.5)
    return llm


@pytest.mark.parametrize("kind, dtype, tolerance, shared_prefix", [
    ("plain", torch.float32, 1e-5, False), ("plain", torch.float32, 1e-5, True), ("lora", torch.float32, 1e-5, False),
    ("qlora", torch.float32, 1e-4, False), ("lora", torch.bfloat16, 1e-2, False), ("plain", torch.bfloat16, 1e-2, True),
])
def test_loss_from_labelled_positions_equals_the_full_logits_loss(kind, dtype, tolerance, shared_prefix, tiny_llm,
                                                                  tiny_llm_dir):
    llm = _llm(kind, tiny_llm, tiny_llm_dir, dtype)
    image = torch.randn(3, 5, 32, requires_grad=True)
    prompts = [llm.chat_text([{"role": "user", "content": f"<image>\n{p}"}]) for p in PROMPTS]
    reference_inputs = llm.splice(prompts, image, targets=TARGETS, padding_side="right")
    assert len({int(row.nonzero()[0]) for row in reference_inputs.labels != -100}) == 3  # answers start apart
    prefix = SharedPrefix(llm) if shared_prefix else None
    rest = prefix.strip(prompts) if prefix else prompts
    fast = labelled_loss(llm.model, llm.splice(rest, image, targets=TARGETS, padding_side="right"), prefix)
    (fast_grad,) = torch.autograd.grad(fast, image)
    reference = full_logits_loss(llm.model, reference_inputs)
    (reference_grad,) = torch.autograd.grad(reference, image)
    assert fast.dtype == torch.float32 and (prefix is None or prefix.length == 3)
    assert fast.item() == pytest.approx(reference.item(), rel=tolerance)
    scale = reference_grad.abs().max()
    assert torch.allclose(fast_grad, reference_grad, rtol=10 * tolerance, atol=10 * tolerance * scale)


def test_frozen_caption_stage_loss_matches_the_path_with_full_logits_and_no_shared_prefix(tiny_llm):
    llm = LanguageModel(tiny_llm.name, copy.deepcopy(tiny_llm.model), tiny_llm.tokenizer)
    adapter = build_adapter("mlp", encoder="fake", token_dim=64, num_encoder_tokens=49, llm=llm.name, llm_hidden=32)
    batch = Batch(fake_features(4), shapes_samples("train", 2, vqa_per_image=1))
    config = load_config(None)
    fast, reference = caption_stage(config, adapter, llm), caption_stage(config, adapter, llm, labelled_only=False)
    assert fast.loss(batch).item() == pytest.approx(reference.loss(batch).item(), rel=1e-5)
    assert fast.loss(batch).item() == pytest.approx(reference.loss(batch).item(), rel=1e-5)  # the cached prefix


def test_auto_precision_picks_bf16_only_where_the_device_multiplies_bf16(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_bf16_units", lambda: True)
    assert precision.resolve_precision("auto", "cpu") == "bf16"
    monkeypatch.setattr(precision, "cpu_has_bf16_units", lambda: False)
    assert precision.resolve_precision("auto", "cpu") == "fp32"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    assert precision.resolve_precision("auto", "cuda") == "bf16"
    assert precision.resolve_precision("auto", "mps") == "fp32"


def test_cpu_bf16_units_are_amx_or_avx512_bf16(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    for flags, expected in [({"avx2", "amx_bf16", "amx_tile"}, True), ({"avx512f", "avx512_bf16"}, True),
                            ({"avx2", "avx512f", "f16c"}, False)]:
        monkeypatch.setattr(precision, "cpu_flags", lambda flags=flags: frozenset(flags))
        assert precision.cpu_has_bf16_units() is expected


def test_explicit_precision_overrides_the_device_check(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_bf16_units", lambda: True)
    assert precision.resolve_precision("fp32", "cpu") == "fp32"
    monkeypatch.setattr(precision, "cpu_has_bf16_units", lambda: False)
    assert precision.resolve_precision("bf16", "cpu") == "bf16"
    assert load_config(None, ['train.precision="fp32"']).train.precision == "fp32"


def test_fp16_is_kept_on_gpus_and_refused_on_a_cpu_with_the_reason():
    assert precision.resolve_precision("fp16", "cuda") == "fp16" and precision.compute_dtype("fp16") == torch.float16
    assert precision.resolve_precision("fp16", "mps") == "fp16"
    with pytest.raises(ValueError, match="'fp16' trains with a gradient scaler on a GPU .* use bf16 or fp32 there"):
        precision.resolve_precision("fp16", "cpu")


@pytest.mark.parametrize("override, message", [
    ('train.precision="fp8"', "'train.precision' must be one of ['auto', 'bf16', 'fp16', 'fp32'], got 'fp8'"),
    ('train.mixed_precision="bf16"', "unknown config key 'train.mixed_precision' (did you mean 'train.precision'?)"),
])
def test_bad_precision_is_refused_at_start(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(None, [override])


def test_default_configs_choose_precision_automatically():
    assert load_config(None).train.precision == "auto"
    for path in sorted((ROOT / "train" / "configs").glob("*.toml")):
        assert load_config(path).train.precision == "auto", path.name


@pytest.mark.parametrize("mode", ["frozen", "lora", "qlora"])
def test_bf16_caption_step_updates_fp32_adapter_and_lora_weights(mode, tiny_llm_dir):
    config = load_config(None, [f'caption.llm_mode="{mode}"', 'caption.lora_targets=["q_proj","v_proj"]'])
    quantization = "4bit" if mode == "qlora" else None
    llm = load_llm(str(tiny_llm_dir), quantization=quantization, dtype=torch.bfloat16)
    torch.manual_seed(0)
    adapter = build_adapter("mlp", encoder="fake", token_dim=64, num_encoder_tokens=49, llm=llm.name, llm_hidden=32)
    parts = caption_stage(config, adapter, llm)
    trainable = [p for module in [adapter, *parts.extra_trainable] for p in module.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in trainable]
    optimizer = torch.optim.AdamW(trainable, lr=1e-2)
    loss = parts.loss(Batch(fake_features(4), shapes_samples("train", 2, vqa_per_image=1)))
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss) and loss.dtype == torch.float32
    assert (len(trainable) > len(list(adapter.parameters()))) == (mode != "frozen")  # LoRA weights train too
    assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32 for p in trainable)
    assert all(not torch.equal(old, p) for old, p in zip(before, trainable) if p.grad.abs().sum() > 0)
    frozen_linear = llm.model.get_output_embeddings().weight
    assert frozen_linear.dtype == (torch.float32 if mode == "qlora" else torch.bfloat16)  # peft upcasts for QLoRA
    if mode == "qlora":
        assert "4bit" in type(llm.model.get_base_model().model.layers[0].self_attn.q_proj.base_layer).__name__


class TinyEncoder(VisionEncoder):
    name = "tiny-conv"
    image_size = 16

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 8, 4, stride=4)

    @property
    def embed_dim(self) -> int:
        return 8

    @property
    def num_tokens(self) -> int:
        return 16

    def encode(self, pixels: torch.Tensor) -> EncoderOutput:
        tokens = self.conv(pixels).flatten(2).transpose(1, 2)
        return EncoderOutput(tokens, tokens.mean(dim=1))


def test_bf16_features_are_cached_apart_from_fp32_ones_and_stay_close(tmp_path):
    samples = shapes_samples("train", 3, vqa_per_image=0)
    encoder = TinyEncoder()
    caches = {p: FeatureCache(encoder, root=tmp_path, precision=p) for p in ("fp32", "bf16")}
    assert caches["fp32"].folder != caches["bf16"].folder
    features = {p: cache.features(samples, progress=False)[0].tokens.float() for p, cache in caches.items()}
    again = FeatureCache(encoder, root=tmp_path, precision="fp32")
    assert torch.equal(again.features(samples, progress=False)[0].tokens.float(), features["fp32"])
    assert again.hits == 3 and again.misses == 0
    error = (features["bf16"] - features["fp32"]).norm() / features["fp32"].norm()
    assert 0 < error < 0.02
