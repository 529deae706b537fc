"""Multi-stage CNN adapter v1-v4 (the ResNet-to-ViT seed): fuse all stage maps into a grid of tokens."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from vlm_demo.adapters.base import Adapter, AdapterConfig
from vlm_demo.encoders.base import EncoderOutput

VERSIONS = {  # version -> (3x3 conv in the fusion block, transformer encoder before pooling)
    "v1": (False, False),
    "v2": (False, True),
    "v3": (True, False),
    "v4": (True, True),
}


@dataclass
class MultiStageConfig(AdapterConfig):
    kind: str = "multistage"
    version: str = "v1"
    proj_dim: int = 256  # every stage map is projected to this many channels by its own 1x1 conv
    fusion_dim: int = 512
    grid_size: int = 7  # output tokens = grid_size ** 2
    transformer_layers: int = 2
    transformer_heads: int = 8
    stages: list[int] = field(default_factory=list)  # which stage maps to fuse (0 = the shallowest; empty: all)

    @property
    def needs(self) -> frozenset[str]:
        return frozenset({"stage_maps"})


class MultiStageAdapter(Adapter):
    """Fuses CNN stage maps (1x1/3x3 convs, optional transformer) into a token grid."""

    config_class = MultiStageConfig

    def __init__(self, config: MultiStageConfig) -> None:
        super().__init__(config)
        c = self.config
        if c.version not in VERSIONS:
            raise ValueError(f"multistage version must be one of {sorted(VERSIONS)}, got '{c.version}'")
        if not c.stage_dims:
            raise ValueError("multistage adapter needs an encoder with stage maps (stage_dims is empty)")
        local_context, self.use_transformer = VERSIONS[c.version]
        self.chosen = list(c.stages) or list(range(len(c.stage_dims)))
        if any(i >= len(c.stage_dims) for i in self.chosen):
            raise ValueError(f"multistage stages {c.stages} name maps the encoder lacks (it has {len(c.stage_dims)})")
        self.stage_proj = nn.ModuleList(nn.Conv2d(c.stage_dims[i], c.proj_dim, kernel_size=1) for i in self.chosen)
        middle = nn.Conv2d(c.fusion_dim, c.fusion_dim, kernel_size=3, padding=1) if local_context else (
            nn.Conv2d(c.fusion_dim, c.fusion_dim, kernel_size=1)
        )
        self.fusion = nn.Sequential(
            nn.Conv2d(c.proj_dim * len(self.chosen), c.fusion_dim, kernel_size=1), nn.GELU(),
            middle, nn.GELU(),
            nn.Conv2d(c.fusion_dim, c.llm_hidden, kernel_size=1),
        )
        if self.use_transformer:
            layer = nn.TransformerEncoderLayer(
                c.llm_hidden, c.transformer_heads, dim_feedforward=4 * c.llm_hidden,
                dropout=0.0, activation="gelu", batch_first=True, norm_first=True,
            )
            self.transformer = nn.TransformerEncoder(layer, c.transformer_layers, enable_nested_tensor=False)
        self.pool = nn.AdaptiveAvgPool2d(c.grid_size)
        self.position = nn.Parameter(torch.zeros(1, c.grid_size**2, c.llm_hidden))
        self.norm = nn.LayerNorm(c.llm_hidden)

    @property
    def num_output_tokens(self) -> int:
        return self.config.grid_size**2

    def token_grid(self) -> tuple[int | None, str]:
        return self.config.grid_size, "each token pools its cell from every CNN stage"

    def forward(self, features: EncoderOutput) -> torch.Tensor:
        deepest = features.stages[-1].shape[-2:]
        projected = [
            F.interpolate(proj(stage), size=deepest, mode="bilinear", align_corners=False)
            for proj, stage in zip(self.stage_proj, [features.stages[i] for i in self.chosen])
        ]
        fused = self.fusion(torch.cat(projected, dim=1))  # [B, H, h, w]
        if self.use_transformer:
            batch, width, height, breadth = fused.shape
            sequence = self.transformer(fused.flatten(2).transpose(1, 2))
            fused = sequence.transpose(1, 2).reshape(batch, width, height, breadth)
        tokens = self.pool(fused).flatten(2).transpose(1, 2)
        return self.norm(tokens + self.position)
