"""Per-token Linear-GELU-Linear projector with hidden width 2x the output (TerraAlign / LLaVA-1.5)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vlm_demo.adapters.base import Adapter, AdapterConfig
from vlm_demo.adapters.label import IMAGENET_CLASSES, TOKENS_PER_CLASS, LabelTokens
from vlm_demo.encoders.base import EncoderOutput


@dataclass
class MLPConfig(AdapterConfig):
    kind: str = "mlp"
    hidden_multiplier: int = 2
    # Indices of CNN stage maps whose channels are appended to every token. Early stages keep colour and
    # edges that the last ImageNet layer has largely discarded.
    stage_features: list[int] = field(default_factory=list)
    # For each entry of stage_features, the side of the sub-grid a token keeps from its cell of that map:
    # 1 averages the cell, 4 keeps a 4x4 sub-grid as channels (space-to-depth). Empty means all 1.
    stage_subgrid: list[int] = field(default_factory=list)
    # Side of the square of neighbouring patch tokens merged into one by stacking their channels (nanoVLM's pixel
    # shuffle): 2 turns DINOv2's 16x16 patches into 8x8 tokens, a quarter of the LLM's image context. A class token
    # before the patches stays one token, repeated to the merged width.
    token_merge: int = 1
    # LayerNorm on each input group (tokens and every stage) so maps with very different scales mix evenly.
    input_norm: bool = False
    # Top classes of the encoder's own classifier appended as label tokens (see adapters/label.py); 0 = none.
    class_tokens: int = 0
    tokens_per_class: int = TOKENS_PER_CLASS
    num_classes: int = IMAGENET_CLASSES
    train_table: bool = True  # the label tokens' table trains (see LabelConfig)
    everyday_names: bool = False  # the label tokens start from everyday phrases (see LabelConfig)

    @property
    def needs(self) -> frozenset[str]:
        return frozenset({"stage_maps"} if self.stage_features else ()) | frozenset(
            {"class_head"} if self.class_tokens else ())


class MLPAdapter(Adapter):
    """Each image token (optionally with early-stage detail) through Linear-GELU-Linear (hidden 2x the LLM)."""

    config_class = MLPConfig

    def __init__(self, config: MLPConfig) -> None:
        super().__init__(config)
        c = self.config
        if c.stage_features and not all(0 <= i < len(c.stage_dims) for i in c.stage_features):
            raise ValueError(f"stage_features {c.stage_features} needs an encoder with those stage maps "
                             f"(it has {len(c.stage_dims)})")
        if c.stage_subgrid and len(c.stage_subgrid) != len(c.stage_features):
            raise ValueError(f"stage_subgrid {c.stage_subgrid} needs one entry per stage_features entry "
                             f"{c.stage_features}")
        grid = math.isqrt(c.num_encoder_tokens)
        if c.token_merge < 1 or grid % c.token_merge:
            raise ValueError(f"token_merge {c.token_merge} must divide the encoder's {grid}x{grid} token grid")
        group_dims = [c.token_dim * c.token_merge**2]
        group_dims += [c.stage_dims[i] * sub**2 for i, sub in zip(c.stage_features, self.subgrids)]
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for dim in group_dims) if c.input_norm else None
        hidden = c.hidden_multiplier * c.llm_hidden
        self.fc1 = nn.Linear(sum(group_dims), hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, c.llm_hidden)
        self.labels = (LabelTokens(c.token_dim, c.llm_hidden, c.num_classes, c.class_tokens, c.tokens_per_class,
                                   c.train_table, c.everyday_names)
                       if c.class_tokens else None)

    @property
    def subgrids(self) -> list[int]:
        return self.config.stage_subgrid or [1] * len(self.config.stage_features)

    @property
    def num_output_tokens(self) -> int:
        tokens = self.config.num_encoder_tokens
        grid, merge = math.isqrt(tokens), self.config.token_merge
        return tokens - grid**2 + (grid // merge) ** 2 + (self.labels.num_tokens if self.labels is not None else 0)

    def token_grid(self) -> tuple[int | None, str]:
        tokens = self.config.num_encoder_tokens
        side = math.isqrt(tokens) // self.config.token_merge
        if side * side * self.config.token_merge**2 != tokens:
            return None, f"the encoder's {tokens} tokens do not form a square grid"
        extra = self.num_output_tokens - side * side
        return side, f"the {extra} label tokens after the grid are not shown" if extra else ""

    def start_from(self, encoder: Any, llm: Any) -> None:
        if self.labels is not None:
            self.labels.start_from(encoder, llm)

    def merged(self, tokens: torch.Tensor) -> torch.Tensor:
        """[B, prefix + grid^2, D] -> [B, prefix + (grid/m)^2, D*m^2] for token_merge m (class tokens repeated)."""
        merge = self.config.token_merge
        if merge == 1:
            return tokens
        grid = math.isqrt(tokens.shape[1])
        prefix = tokens.shape[1] - grid**2
        patches = tokens[:, prefix:].transpose(1, 2).reshape(tokens.shape[0], -1, grid, grid)
        patches = F.pixel_unshuffle(patches, merge).flatten(2).transpose(1, 2)
        return torch.cat([tokens[:, :prefix].repeat(1, 1, merge**2), patches], dim=1)

    def forward(self, features: EncoderOutput) -> torch.Tensor:
        tokens = self.merged(features.tokens)
        grid = math.isqrt(tokens.shape[1])
        groups = [tokens]
        for index, sub in zip(self.config.stage_features, self.subgrids):
            stage = F.adaptive_avg_pool2d(features.stages[index].to(tokens.dtype), grid * sub)
            if sub > 1:
                stage = F.pixel_unshuffle(stage, sub)  # [B, C*sub*sub, grid, grid]
            groups.append(stage.flatten(2).transpose(1, 2))
        if self.norms is not None:
            groups = [norm(group) for norm, group in zip(self.norms, groups)]
        cells = self.fc2(self.act(self.fc1(torch.cat(groups, dim=-1))))
        if self.labels is None:
            return cells
        return torch.cat([cells, self.labels(features.pooled).to(cells.dtype)], dim=1)
