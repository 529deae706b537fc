"""Learnable queries with self-attention, cross-attention to the image and feed-forward (TerraAlign, Q-Former)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from vlm_demo.adapters.base import Adapter, AdapterConfig
from vlm_demo.encoders.base import EncoderOutput


@dataclass
class QueryConfig(AdapterConfig):
    kind: str = "query"
    num_queries: int = 32  # the thesis used 128 queries, width 512 and 4 blocks over CoCa's 255 tokens; ours see 49
    width: int = 256
    num_blocks: int = 2
    num_heads: int = 4
    dropout: float = 0.0
    init_std: float = 0.02  # BERT's initializer_range


class QueryAdapter(Adapter):
    """Learnable queries read the image by cross-attention; emits num_queries tokens."""

    config_class = QueryConfig
    no_grid_reason = ("is a resampler: each of its tokens is a learned query that attends over the whole grid, "
                      "so no token belongs to one cell")

    def __init__(self, config: QueryConfig) -> None:
        super().__init__(config)
        c = self.config
        self.queries = nn.Parameter(torch.randn(1, c.num_queries, c.width) * c.init_std)
        self.image_proj = nn.Linear(c.token_dim, c.width)
        block = nn.TransformerDecoderLayer(
            c.width, c.num_heads, dim_feedforward=4 * c.width, dropout=c.dropout,
            activation="gelu", batch_first=True, norm_first=True,
        )  # self-attention among queries, cross-attention to the image, feed-forward
        self.blocks = nn.TransformerDecoder(block, c.num_blocks)
        self.norm = nn.LayerNorm(c.width)
        self.output_proj = nn.Linear(c.width, c.llm_hidden)

    @property
    def num_output_tokens(self) -> int:
        return self.config.num_queries

    def forward(self, features: EncoderOutput) -> torch.Tensor:
        image = self.image_proj(features.tokens)
        queries = self.queries.expand(image.shape[0], -1, -1)
        return self.output_proj(self.norm(self.blocks(queries, image)))
