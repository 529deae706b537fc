"""Per-token Linear-GELU-Linear projector with hidden width 2x the output (TerraAlign / LLaVA-1.5)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from vlm_demo.adapters.base import Adapter, AdapterConfig
from vlm_demo.encoders.base import EncoderOutput


@dataclass
class MLPConfig(AdapterConfig):
    kind: str = "mlp"
    hidden_multiplier: int = 2
    # Indices of CNN stage maps whose channels, average-pooled to the token grid, are appended to every token.
    # Early stages keep colour that the last ImageNet layer has largely discarded.
    stage_features: list[int] = field(default_factory=list)


class MLPAdapter(Adapter):
    """Each image token through Linear-GELU-Linear (hidden 2x the LLM width)."""

    config_class = MLPConfig

    def __init__(self, config: MLPConfig) -> None:
        super().__init__(config)
        c = self.config
        if c.stage_features and not all(0 <= i < len(c.stage_dims) for i in c.stage_features):
            raise ValueError(f"stage_features {c.stage_features} needs an encoder with those stage maps "
                             f"(it has {len(c.stage_dims)})")
        in_dim = c.token_dim + sum(c.stage_dims[i] for i in c.stage_features)
        hidden = c.hidden_multiplier * c.llm_hidden
        self.fc1 = nn.Linear(in_dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, c.llm_hidden)

    @property
    def num_output_tokens(self) -> int:
        return self.config.num_encoder_tokens

    def forward(self, features: EncoderOutput) -> torch.Tensor:
        tokens = features.tokens
        if self.config.stage_features:
            grid = math.isqrt(tokens.shape[1])
            pooled = [F.adaptive_avg_pool2d(features.stages[i].to(tokens.dtype), grid).flatten(2).transpose(1, 2)
                      for i in self.config.stage_features]
            tokens = torch.cat([tokens, *pooled], dim=-1)
        return self.fc2(self.act(self.fc1(tokens)))
