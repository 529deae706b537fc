"""Per-token Linear-GELU-Linear projector with hidden width 2x the output (TerraAlign / LLaVA-1.5)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from vlm_demo.adapters.base import Adapter, AdapterConfig
from vlm_demo.encoders.base import EncoderOutput


@dataclass
class MLPConfig(AdapterConfig):
    kind: str = "mlp"
    hidden_multiplier: int = 2


class MLPAdapter(Adapter):
    """Each image token through Linear-GELU-Linear (hidden 2x the LLM width)."""

    config_class = MLPConfig

    def __init__(self, config: MLPConfig) -> None:
        super().__init__(config)
        hidden = self.config.hidden_multiplier * self.config.llm_hidden
        self.fc1 = nn.Linear(self.config.token_dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, self.config.llm_hidden)

    @property
    def num_output_tokens(self) -> int:
        return self.config.num_encoder_tokens

    def forward(self, features: EncoderOutput) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(features.tokens)))
