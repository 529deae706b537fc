"""Stage registry: name -> what the stage needs loaded and how it builds its parts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from train.config import TrainConfig
from train.stages import Needs, StageParts, align, caption, decoder
from vlm_demo.adapters import Adapter
from vlm_demo.llms import LanguageModel


@dataclass(frozen=True)
class Stage:
    needs: Callable[[TrainConfig], Needs]
    build: Callable[[TrainConfig, Adapter, LanguageModel | None], StageParts]


STAGES: dict[str, Stage] = {
    "align": Stage(align.needs, align.align_stage),
    "caption": Stage(caption.needs, caption.caption_stage),
    "decoder": Stage(decoder.needs, decoder.decoder_stage),  # tinylm stage 1 (PaLM2-VAdapter), then `caption`
}


def get_stage(name: str) -> Stage:
    if name not in STAGES:
        raise ValueError(f"unknown stage '{name}'; known: {', '.join(STAGES)}")
    return STAGES[name]
