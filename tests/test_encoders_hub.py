"""Transformers-backed encoders on tiny random configs (no downloads), plus the packaged DINOv2-small conversion."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import CLIPVisionConfig, Dinov2Config, ResNetConfig, SiglipVisionConfig
from transformers.models.qwen2_5_vl.configuration_qwen2_5_vl import Qwen2_5_VLVisionConfig

from vlm_demo.encoders.hf import encoder_from_config, load_hub_encoder, qwen_patchify

TINY_VIT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
TINY_CONFIGS = {
    "clip": lambda: CLIPVisionConfig(**TINY_VIT, image_size=32, patch_size=8),
    "siglip": lambda: SiglipVisionConfig(**TINY_VIT, image_size=32, patch_size=8),
    "dinov2": lambda: Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, image_size=56),
    "resnet": lambda: ResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1],
                                   layer_type="basic"),
    "qwen2_5_vl": lambda: Qwen2_5_VLVisionConfig(depth=2, hidden_size=32, intermediate_size=64, num_heads=2,
                                                 out_hidden_size=48, fullatt_block_indexes=[1]),
}
EXPECTED = {  # family -> (num_tokens, embed_dim, stage_dims)
    "clip": (16, 32, []),
    "siglip": (16, 32, []),
    "dinov2": (257, 32, []),
    "resnet": (49, 32, [8, 16, 24, 32]),
    "qwen2_5_vl": (64, 48, []),
}


def photos() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, size, dtype=np.uint8)) for size in [(240, 320, 3), (300, 200, 3)]]


@pytest.fixture(scope="module", params=list(TINY_CONFIGS))
def family_encoder(request):
    torch.manual_seed(0)
    return request.param, encoder_from_config(request.param, TINY_CONFIGS[request.param]())


def test_tiny_encoder_outputs_match_declared_shapes(family_encoder) -> None:
    family, encoder = family_encoder
    num_tokens, embed_dim, stage_dims = EXPECTED[family]
    assert (encoder.num_tokens, encoder.embed_dim, encoder.stage_dims) == (num_tokens, embed_dim, stage_dims)
    pixels = encoder.preprocess(photos())
    assert pixels.shape == (2, 3, encoder.image_size, encoder.image_size)
    with torch.inference_mode():
        out = encoder.encode(pixels)
    assert out.tokens.shape == (2, num_tokens, embed_dim)
    assert out.pooled.shape == (2, embed_dim)
    assert [stage.shape[1] for stage in out.stages] == stage_dims
    assert torch.isfinite(out.tokens).all() and torch.isfinite(out.pooled).all()


def test_tiny_encoder_is_frozen_and_runs_through_forward(family_encoder) -> None:
    family, encoder = family_encoder
    assert not encoder.training
    assert not any(parameter.requires_grad for parameter in encoder.parameters())
    out = encoder(photos()[:1])
    assert out.tokens.shape == (1, *EXPECTED[family][:2])


def test_resnet_stage_maps_halve_from_56_to_7_pixels() -> None:
    encoder = encoder_from_config("resnet", TINY_CONFIGS["resnet"]())
    with torch.inference_mode():
        out = encoder.encode(encoder.preprocess(photos()[:1]))
    assert [tuple(stage.shape[2:]) for stage in out.stages] == [(56, 56), (28, 28), (14, 14), (7, 7)]
    assert torch.equal(out.tokens, out.stages[-1].flatten(2).transpose(1, 2))


def test_siglip_without_head_pools_by_mean_of_tokens() -> None:
    config = SiglipVisionConfig(**TINY_VIT, image_size=32, patch_size=8, vision_use_head=False)
    encoder = encoder_from_config("siglip", config)
    with torch.inference_mode():
        out = encoder.encode(encoder.preprocess(photos()[:1]))
    torch.testing.assert_close(out.pooled, out.tokens.mean(dim=1))


def test_preprocessing_constants_follow_the_family() -> None:
    clip = encoder_from_config("clip", TINY_CONFIGS["clip"]())
    dinov2 = encoder_from_config("dinov2", TINY_CONFIGS["dinov2"](), name="tiny-dino")
    assert clip.mean == (0.48145466, 0.4578275, 0.40821073) and clip.image_size == 32
    assert dinov2.std == (0.229, 0.224, 0.225) and dinov2.image_size == 224 and dinov2.name == "tiny-dino"
    with pytest.raises(ValueError, match="unknown encoder family"):
        encoder_from_config("vgg", TINY_CONFIGS["clip"]())


def test_qwen_patch_layout_matches_the_transformers_image_processor() -> None:
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (56, 84, 3), dtype=np.uint8))
    processor = Qwen2VLImageProcessorPil(do_resize=False, do_normalize=False, do_rescale=False)
    reference = processor(images=[image], return_tensors="pt")
    pixels = torch.from_numpy(np.asarray(image, dtype=np.float32)).permute(2, 0, 1)[None]
    flat, grid_thw = qwen_patchify(pixels, patch=14, merge=2, temporal=2)
    assert grid_thw.tolist() == reference["image_grid_thw"].tolist() == [[1, 4, 6]]
    torch.testing.assert_close(flat, reference["pixel_values"].float())


@pytest.mark.parametrize("family", ["clip", "siglip", "dinov2", "resnet"])
def test_hub_loader_reads_a_saved_checkpoint_folder(family, tmp_path) -> None:
    torch.manual_seed(0)
    source = encoder_from_config(family, TINY_CONFIGS[family]())
    source.model.save_pretrained(tmp_path)
    loaded = load_hub_encoder(family, str(tmp_path), name="tiny")
    pixels = source.preprocess(photos()[:1])
    with torch.inference_mode():
        torch.testing.assert_close(loaded.encode(pixels).tokens, source.encode(pixels).tokens)
    assert loaded.name == "tiny" and not any(parameter.requires_grad for parameter in loaded.parameters())


def test_qwen_hub_loader_reads_only_the_vision_shards(tmp_path) -> None:
    from safetensors.torch import save_file
    from transformers import Qwen2_5_VLConfig

    torch.manual_seed(0)
    source = encoder_from_config("qwen2_5_vl", TINY_CONFIGS["qwen2_5_vl"]())
    Qwen2_5_VLConfig(vision_config=source.model.config.to_dict()).save_pretrained(tmp_path)
    save_file({f"visual.{key}": value.contiguous() for key, value in source.model.state_dict().items()},
              str(tmp_path / "model-00001-of-00002.safetensors"))
    (tmp_path / "model-00002-of-00002.safetensors").write_bytes(b"language model: must never be opened")
    weight_map = {f"visual.{key}": "model-00001-of-00002.safetensors" for key in source.model.state_dict()}
    weight_map["model.language_model.embed_tokens.weight"] = "model-00002-of-00002.safetensors"
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    loaded = load_hub_encoder("qwen2_5_vl", str(tmp_path))
    pixels = source.preprocess(photos()[:1])
    with torch.inference_mode():
        torch.testing.assert_close(loaded.encode(pixels).tokens, source.encode(pixels).tokens)
    assert loaded.num_tokens == 64 and loaded.embed_dim == 48


@pytest.mark.slow
def test_packaged_dinov2_small_converts_once_and_encodes_a_photo(tmp_path, monkeypatch) -> None:
    from skimage.data import chelsea

    from vlm_demo.encoders import build_encoder

    monkeypatch.setenv("VLM_DEMO_CACHE", str(tmp_path))
    encoder = build_encoder("dinov2-small")
    folder = tmp_path / "encoders" / "dinov2-small"
    assert sorted(path.name for path in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert (encoder.name, encoder.num_tokens, encoder.embed_dim) == ("dinov2-small", 257, 384)
    out = encoder([Image.fromarray(chelsea())])
    assert out.tokens.shape == (1, 257, 384) and out.pooled.shape == (1, 384)
    assert torch.isfinite(out.tokens).all()
    again = build_encoder("dinov2-small")  # second load reads the cached safetensors
    torch.testing.assert_close(again([Image.fromarray(chelsea())]).tokens, out.tokens)
