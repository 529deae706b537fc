"""Training stages: each builds the trainable parts and a loss over a batch of cached features."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from train.data import Sample
from vlm_demo.encoders import EncoderOutput


@dataclass
class Batch:
    features: EncoderOutput
    samples: list[Sample]
    teacher: torch.Tensor | None = None  # teacher encoder tokens for distillation


@dataclass
class StageParts:
    """What the loop needs from a stage."""

    adapter: nn.Module
    loss: Callable[[Batch], torch.Tensor]
    extra_trainable: list[nn.Module] = field(default_factory=list)  # e.g. a LoRA-wrapped LLM
    save_extra: Callable[[str], None] | None = None  # writes e.g. LoRA weights into a folder
