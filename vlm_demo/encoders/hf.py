"""Transformers vision towers (CLIP, SigLIP, DINOv2, ResNet, Qwen2.5-VL) behind the VisionEncoder interface."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from vlm_demo.encoders.base import EncoderOutput, VisionEncoder

if TYPE_CHECKING:
    from transformers import PreTrainedConfig

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)

# family -> (transformers model class, mean, std)
FAMILIES: dict[str, tuple[str, tuple[float, float, float], tuple[float, float, float]]] = {
    "clip": ("CLIPVisionModel", CLIP_MEAN, CLIP_STD),
    "siglip": ("SiglipVisionModel", HALF, HALF),
    "dinov2": ("Dinov2Model", IMAGENET_MEAN, IMAGENET_STD),
    "resnet": ("ResNetModel", IMAGENET_MEAN, IMAGENET_STD),
    "qwen2_5_vl": ("Qwen2_5_VisionTransformerPretrainedModel", CLIP_MEAN, CLIP_STD),
}


def model_class(family: str) -> type[nn.Module]:
    if family not in FAMILIES:
        raise ValueError(f"unknown encoder family '{family}'; known: {', '.join(FAMILIES)}")
    if family == "qwen2_5_vl":
        from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VisionTransformerPretrainedModel

        return Qwen2_5_VisionTransformerPretrainedModel
    import transformers

    return getattr(transformers, FAMILIES[family][0])


def qwen_patchify(pixels: torch.Tensor, patch: int, merge: int, temporal: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, 3, S, S] pixels to Qwen2-VL's flat patches [B*h*w, 3*T*p*p] (frame repeated T times) and grid_thw [B, 3]."""
    batch, channels, height, width = pixels.shape
    grid_h, grid_w = height // patch, width // patch
    x = pixels.reshape(batch, channels, grid_h // merge, merge, patch, grid_w // merge, merge, patch)
    x = x.permute(0, 2, 5, 3, 6, 1, 4, 7).unsqueeze(6).expand(-1, -1, -1, -1, -1, -1, temporal, -1, -1)
    grid_thw = torch.tensor([[1, grid_h, grid_w]] * batch, device=pixels.device)
    return x.reshape(batch * grid_h * grid_w, channels * temporal * patch * patch), grid_thw


class HFVisionEncoder(VisionEncoder):
    """A frozen transformers vision model; `family` decides which outputs become tokens, pooled vector and stages."""

    def __init__(self, family: str, model: nn.Module, name: str) -> None:
        super().__init__()
        model_class(family)  # validates the family
        self.family, self.model, self.name = family, model, name
        _, self.mean, self.std = FAMILIES[family]
        config = model.config
        self.image_size = config.image_size if family in ("clip", "siglip") else 224
        self.eval().requires_grad_(False)

    @property
    def embed_dim(self) -> int:
        config = self.model.config
        if self.family == "resnet":
            return config.hidden_sizes[-1]
        return config.out_hidden_size if self.family == "qwen2_5_vl" else config.hidden_size

    @property
    def num_tokens(self) -> int:
        config = self.model.config
        if self.family == "resnet":  # stride-4 stem, then every stage but (usually) the first halves the map
            side = self.image_size // 4
            for index in range(len(config.hidden_sizes)):
                side = (side + 1) // 2 if index or config.downsample_in_first_stage else side
            return side * side
        if self.family == "qwen2_5_vl":
            return (self.image_size // (config.patch_size * config.spatial_merge_size)) ** 2
        return (self.image_size // config.patch_size) ** 2 + (self.family == "dinov2")  # DINOv2 keeps its CLS token

    @property
    def stage_dims(self) -> list[int]:
        return list(self.model.config.hidden_sizes) if self.family == "resnet" else []

    def encode(self, pixels: torch.Tensor) -> EncoderOutput:
        dtype = next(self.model.parameters()).dtype
        pixels = pixels.to(dtype)
        if self.family == "qwen2_5_vl":
            config = self.model.config
            flat, grid_thw = qwen_patchify(pixels, config.patch_size, config.spatial_merge_size,
                                           config.temporal_patch_size)
            merged = self.model(flat, grid_thw=grid_thw).pooler_output.reshape(len(pixels), -1, self.embed_dim)
            return EncoderOutput(tokens=merged.float(), pooled=merged.float().mean(dim=1))
        out = self.model(pixel_values=pixels, output_hidden_states=self.family == "resnet")
        if self.family == "resnet":
            tokens = out.last_hidden_state.flatten(2).transpose(1, 2)
            return EncoderOutput(tokens=tokens, pooled=out.pooler_output.flatten(1), stages=list(out.hidden_states[1:]))
        tokens = out.last_hidden_state[:, 1:] if self.family == "clip" else out.last_hidden_state
        pooled = out.pooler_output if out.pooler_output is not None else tokens.mean(dim=1)  # head-less SigLIP
        return EncoderOutput(tokens=tokens.float(), pooled=pooled.float())


def encoder_from_config(family: str, config: PreTrainedConfig, name: str | None = None) -> VisionEncoder:
    """A randomly initialised encoder of `family` built from a transformers config (used by tests)."""
    return HFVisionEncoder(family, model_class(family)(config), name or f"{family}-random")


def _checkpoint_file(hub_id: str, filename: str) -> str | None:
    """A file of a hub repo (downloaded unless cached) or of a local checkpoint folder; None if the repo lacks it."""
    if Path(hub_id).is_dir():
        return str(Path(hub_id) / filename) if (Path(hub_id) / filename).is_file() else None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    try:
        return hf_hub_download(hub_id, filename)
    except EntryNotFoundError:
        return None


def _load_qwen_visual(hub_id: str) -> nn.Module:
    """Only the `visual.*` tensors of a Qwen2.5-VL checkpoint, in float32; the language model is never loaded."""
    from safetensors import safe_open
    from transformers import AutoConfig
    from transformers.initialization import no_init_weights

    config = AutoConfig.from_pretrained(hub_id).vision_config
    prefix = re.compile(r"^(model\.)?visual\.")  # hub checkpoints say `visual.`, transformers-5 saves `model.visual.`
    index = _checkpoint_file(hub_id, "model.safetensors.index.json")
    files = ["model.safetensors"]
    if index is not None:
        with open(index) as handle:
            files = sorted({file for key, file in json.load(handle)["weight_map"].items() if prefix.match(key)})
    state = {}
    for file in files:
        with safe_open(_checkpoint_file(hub_id, file), framework="pt") as shard:
            keys = [key for key in shard.keys() if prefix.match(key)]
            state.update({prefix.sub("", key): shard.get_tensor(key).float() for key in keys})
    with no_init_weights():  # every tensor is overwritten below
        model = model_class("qwen2_5_vl")(config)
    model.load_state_dict(state, strict=True)
    return model


def load_hub_encoder(family: str, hub_id: str, name: str | None = None) -> VisionEncoder:
    """Pretrained encoder of `family` from a Hugging Face hub id (downloads unless cached) or a local folder, named
    `name` (the registry's name for it) or else by the id."""
    if family == "qwen2_5_vl":
        model = _load_qwen_visual(hub_id)
    else:
        model = model_class(family).from_pretrained(hub_id, dtype=torch.float32)
    return HFVisionEncoder(family, model, name or hub_id)
