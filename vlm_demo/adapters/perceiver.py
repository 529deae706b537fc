"""Perceiver resampler: latents cross-attend to the image tokens (Flamingo; PaLM2-VAdapter's baseline)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from vlm_demo.adapters.base import Adapter, AdapterConfig
from vlm_demo.encoders.base import EncoderOutput


class PerceiverLayer(nn.Module):
    """Latents attend to [image; latents], then a feed-forward; both residual with pre-norm."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.norm_latents = nn.LayerNorm(width)
        self.norm_image = nn.LayerNorm(width)
        self.attention = nn.MultiheadAttention(width, heads, batch_first=True)
        self.feed_forward = nn.Sequential(
            nn.LayerNorm(width), nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width)
        )

    def forward(self, latents: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        queries = self.norm_latents(latents)
        keys = torch.cat([self.norm_image(image), queries], dim=1)
        latents = latents + self.attention(queries, keys, keys, need_weights=False)[0]
        return latents + self.feed_forward(latents)


class PerceiverResampler(nn.Module):
    def __init__(self, in_dim: int, width: int, num_latents: int, depth: int, heads: int) -> None:
        super().__init__()
        self.image_proj = nn.Linear(in_dim, width)
        self.latents = nn.Parameter(torch.randn(1, num_latents, width) * 0.02)
        self.layers = nn.ModuleList(PerceiverLayer(width, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(width)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        image = self.image_proj(tokens)
        latents = self.latents.expand(tokens.shape[0], -1, -1)
        for layer in self.layers:
            latents = layer(latents, image)
        return self.norm(latents)


@dataclass
class PerceiverConfig(AdapterConfig):
    kind: str = "perceiver"
    num_latents: int = 32
    width: int = 512
    depth: int = 2
    num_heads: int = 8


class PerceiverAdapter(Adapter):
    """Perceiver resampler: latents cross-attend to the image tokens."""

    config_class = PerceiverConfig
    no_grid_reason = "is a resampler: its latent tokens attend over the whole grid, so no token belongs to one cell"

    def __init__(self, config: PerceiverConfig) -> None:
        super().__init__(config)
        c = self.config
        self.resampler = PerceiverResampler(c.token_dim, c.width, c.num_latents, c.depth, c.num_heads)
        self.output_proj = nn.Linear(c.width, c.llm_hidden)

    @property
    def num_output_tokens(self) -> int:
        return self.config.num_latents

    def forward(self, features: EncoderOutput) -> torch.Tensor:
        return self.output_proj(self.resampler(features.tokens))
