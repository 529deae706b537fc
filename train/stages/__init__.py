"""Training stages: each says what it needs loaded and builds the trainable parts and a loss over cached features."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from train.data import Sample
from vlm_demo.encoders import EncoderOutput


@dataclass
class Batch:
    features: EncoderOutput
    samples: list[Sample]
    teacher: torch.Tensor | None = None  # teacher encoder tokens for distillation


@dataclass(frozen=True)
class Needs:
    """What a stage needs loaded besides the encoder and the adapter."""

    llm: bool = False  # the LLM: its embedding table (EMD) or its forward (captions)
    llm_runs: bool = False  # the LLM runs forward: weights in the compute dtype
    quantization: str | None = None  # "4bit" for QLoRA
    teacher: str = ""  # a teacher encoder whose tokens the adapter imitates


@dataclass
class StageParts:
    """What the loop needs from a stage. The loss calls `adapter` and `llm` through these fields, so the loop can
    put the modules accelerate prepared (wrapped for gradient sync across processes) in their place."""

    adapter: nn.Module
    loss: Callable[[Batch], torch.Tensor]
    llm: nn.Module | None = None  # the LLM's model when part of it trains (a LoRA), else None
    llm_lr: float | None = None  # the LLM's trainable part's own learning rate (None: the adapter's, train.lr)
    save_extra: Callable[[str], None] | None = None  # writes e.g. LoRA weights into a folder

    @property
    def extra_trainable(self) -> list[nn.Module]:
        return [self.llm] if self.llm is not None else []
