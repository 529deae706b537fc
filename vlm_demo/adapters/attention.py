"""Transformer blocks (self-attention + feed-forward) over the image tokens, then a Linear to the LLM width."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from vlm_demo.adapters.base import Adapter, AdapterConfig
from vlm_demo.encoders.base import EncoderOutput


@dataclass
class AttentionConfig(AdapterConfig):
    kind: str = "attention"
    width: int = 512  # internal width; the image tokens are projected to it first
    num_blocks: int = 4
    num_heads: int = 4
    dropout: float = 0.0


def transformer_block(width: int, heads: int, dropout: float) -> nn.TransformerEncoderLayer:
    return nn.TransformerEncoderLayer(
        width, heads, dim_feedforward=4 * width, dropout=dropout, activation="gelu", batch_first=True, norm_first=True
    )


class AttentionAdapter(Adapter):
    """Self-attention + feed-forward blocks over the image tokens, then a Linear."""

    config_class = AttentionConfig

    def __init__(self, config: AttentionConfig) -> None:
        super().__init__(config)
        c = self.config
        self.input_proj = nn.Linear(c.token_dim, c.width)
        self.position = nn.Parameter(torch.zeros(1, c.num_encoder_tokens, c.width))
        self.blocks = nn.TransformerEncoder(
            transformer_block(c.width, c.num_heads, c.dropout), c.num_blocks, enable_nested_tensor=False
        )
        self.norm = nn.LayerNorm(c.width)
        self.output_proj = nn.Linear(c.width, c.llm_hidden)

    @property
    def num_output_tokens(self) -> int:
        return self.config.num_encoder_tokens

    def token_grid(self) -> tuple[int | None, str]:
        side = math.isqrt(self.config.num_encoder_tokens)
        if side * side != self.config.num_encoder_tokens:
            return None, f"the encoder's {self.config.num_encoder_tokens} tokens do not form a square grid"
        return side, "tokens also see each other through self-attention"

    def forward(self, features: EncoderOutput) -> torch.Tensor:
        x = self.input_proj(features.tokens) + self.position
        return self.output_proj(self.norm(self.blocks(x)))
