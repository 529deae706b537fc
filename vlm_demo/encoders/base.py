"""The vision-encoder interface: images in, image tokens / pooled vector / stage maps out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image
from torch import nn


@dataclass
class EncoderOutput:
    """What an encoder hands to an adapter."""

    tokens: torch.Tensor  # [B, N, D] image tokens
    pooled: torch.Tensor  # [B, D] one vector per image
    stages: list[torch.Tensor] = field(default_factory=list)  # CNN stage maps [B, C_i, H_i, W_i], shallow to deep

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> EncoderOutput:
        def move(tensor: torch.Tensor) -> torch.Tensor:
            return tensor.to(device=device, dtype=dtype) if dtype else tensor.to(device)

        return EncoderOutput(move(self.tokens), move(self.pooled), [move(stage) for stage in self.stages])

    def __getitem__(self, index: slice | list[int] | torch.Tensor) -> EncoderOutput:
        return EncoderOutput(self.tokens[index], self.pooled[index], [stage[index] for stage in self.stages])

    @staticmethod
    def cat(outputs: list[EncoderOutput]) -> EncoderOutput:
        stages = [torch.cat(maps) for maps in zip(*[output.stages for output in outputs])]
        return EncoderOutput(
            torch.cat([output.tokens for output in outputs]),
            torch.cat([output.pooled for output in outputs]),
            stages,
        )


@dataclass(frozen=True)
class ClassHead:
    """An encoder's own classifier on its pooled vector: logits = pooled @ weight.T + bias."""

    weight: torch.Tensor  # [classes, D]
    bias: torch.Tensor  # [classes]
    names: tuple[str, ...]  # class names in class-id order

    def logits(self, pooled: torch.Tensor) -> torch.Tensor:
        return pooled.to(self.weight.device, self.weight.dtype) @ self.weight.T + self.bias


def resize_center_crop(image: Image.Image, size: int) -> Image.Image:
    """The centre square, resized to `size` (bicubic): the same pixels as scaling the shorter side to `size` and
    cropping, but only the square is resampled, so memory follows `size`, not the input's aspect ratio."""
    width, height = image.size
    scale = size / min(width, height)
    scaled_width, scaled_height = max(size, round(width * scale)), max(size, round(height * scale))
    left = (scaled_width - size) // 2 * width / scaled_width
    top = (scaled_height - size) // 2 * height / scaled_height
    box = (left, top, left + size * width / scaled_width, top + size * height / scaled_height)
    return image.resize((size, size), Image.BICUBIC, box=box)


class VisionEncoder(nn.Module, ABC):
    """A frozen image encoder. Subclasses set the preprocessing constants and implement `encode`."""

    name: str = "encoder"
    image_size: int = 224
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    @property
    @abstractmethod
    def embed_dim(self) -> int:
        """Width D of each image token."""

    @property
    @abstractmethod
    def num_tokens(self) -> int:
        """Number N of image tokens per image."""

    @property
    def stage_dims(self) -> list[int]:
        """Channels of each stage map (empty for encoders without stage maps)."""
        return []

    @property
    def class_head(self) -> ClassHead | None:
        """The encoder's own classifier on `pooled` (e.g. its ImageNet head), if it has one."""
        return None

    @property
    def preprocessing_id(self) -> str:
        """Identifies the preprocessing, so cached features are invalidated when it changes."""
        return f"{self.image_size}px-crop-mean{self.mean}-std{self.std}"

    def preprocess(self, images: list[Image.Image]) -> torch.Tensor:
        """RGB PIL images to a normalised [B, 3, S, S] float tensor."""
        size = self.image_size
        arrays = [np.asarray(resize_center_crop(image.convert("RGB"), size), dtype=np.float32) for image in images]
        pixels = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2) / 255.0
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return (pixels - mean) / std

    @abstractmethod
    def encode(self, pixels: torch.Tensor) -> EncoderOutput:
        """Normalised pixels [B, 3, S, S] to features."""

    @torch.inference_mode()
    def forward(self, images: list[Image.Image]) -> EncoderOutput:
        device = next(self.parameters()).device
        return self.encode(self.preprocess(images).to(device))
