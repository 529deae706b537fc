"""Single fully connected layer: pooled image vector -> k pseudo-tokens (the single-FC-layer seed)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from vlm_demo.adapters.base import Adapter, AdapterConfig
from vlm_demo.encoders.base import EncoderOutput


@dataclass
class LinearConfig(AdapterConfig):
    kind: str = "linear"
    num_tokens: int = 1  # k in the paper: 1, 2 or 5


class LinearAdapter(Adapter):
    """Pooled vector -> k pseudo-tokens with one Linear layer."""

    config_class = LinearConfig
    no_grid_reason = "projects the pooled image vector: its tokens come from the whole image"

    def __init__(self, config: LinearConfig) -> None:
        super().__init__(config)
        self.proj = nn.Linear(self.config.token_dim, self.config.num_tokens * self.config.llm_hidden)

    @property
    def num_output_tokens(self) -> int:
        return self.config.num_tokens

    def forward(self, features: EncoderOutput) -> torch.Tensor:
        out = self.proj(features.pooled)
        return out.view(out.shape[0], self.config.num_tokens, self.config.llm_hidden)
