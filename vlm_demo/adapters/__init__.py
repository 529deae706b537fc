"""Adapter registry: family name -> class; build new adapters or load checkpoints by folder or hub id."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from vlm_demo.adapters.attention import AttentionAdapter
from vlm_demo.adapters.base import (
    ENCODER_WEIGHTS,
    LORA_FOLDER,
    Adapter,
    AdapterConfig,
    CheckpointError,
    check_compatible,
    encoder_weights,
    lora_folder,
    read_config,
)
from vlm_demo.adapters.label import LabelAdapter
from vlm_demo.adapters.linear import LinearAdapter
from vlm_demo.adapters.mlp import MLPAdapter
from vlm_demo.adapters.multistage import MultiStageAdapter
from vlm_demo.adapters.perceiver import PerceiverAdapter
from vlm_demo.adapters.query import QueryAdapter
from vlm_demo.adapters.tinylm import TinyLMAdapter

if TYPE_CHECKING:
    from vlm_demo.encoders import VisionEncoder
    from vlm_demo.llms import LanguageModel

ADAPTERS: dict[str, type[Adapter]] = {
    "linear": LinearAdapter,
    "mlp": MLPAdapter,
    "attention": AttentionAdapter,
    "query": QueryAdapter,
    "perceiver": PerceiverAdapter,
    "multistage": MultiStageAdapter,
    "tinylm": TinyLMAdapter,
    "label": LabelAdapter,
}

__all__ = ["ADAPTERS", "ENCODER_WEIGHTS", "LORA_FOLDER", "Adapter", "AdapterConfig", "CheckpointError", "adapter_for",
           "adapter_needs", "build_adapter", "check_compatible", "encoder_weights", "load_adapter", "lora_folder",
           "read_config"]


def adapter_class(kind: str) -> type[Adapter]:
    if kind not in ADAPTERS:
        raise ValueError(f"unknown adapter family '{kind}'; known: {', '.join(ADAPTERS)}")
    return ADAPTERS[kind]


def build_adapter(kind: str, **config: Any) -> Adapter:
    """A new, randomly initialised adapter of one family."""
    cls = adapter_class(kind)
    return cls(cls.config_class.from_dict({**config, "kind": kind}))


def adapter_needs(kind: str, options: dict[str, Any] | None = None) -> frozenset[str]:
    """What an adapter of this family with these options needs from its encoder (asked before building one)."""
    return adapter_class(kind).config_class.from_dict({**(options or {}), "kind": kind}).needs


def adapter_for(encoder: VisionEncoder, target: str, target_width: int, kind: str = "",
                options: dict[str, Any] | None = None, checkpoint: str | Path | None = None,
                llm: LanguageModel | None = None) -> Adapter:
    """The one way the pipeline, training and analysis get an adapter between `encoder` and a target (an LLM, or a
    teacher encoder for distillation): a checkpoint checked against both sides, else a new `kind` adapter, random
    apart from what the family starts from its encoder and `llm` (e.g. class-name embeddings)."""
    if checkpoint:
        adapter = load_adapter(checkpoint)
        check_compatible(adapter.config, encoder.name, encoder.embed_dim, target, target_width)
        return adapter
    adapter = build_adapter(kind, encoder=encoder.name, token_dim=encoder.embed_dim,
                            num_encoder_tokens=encoder.num_tokens, stage_dims=encoder.stage_dims, llm=target,
                            llm_hidden=target_width, **(options or {}))
    if llm is not None:
        adapter.start_from(encoder, llm)
    return adapter


def load_adapter(path_or_id: str | Path, map_location: str = "cpu", values: dict[str, Any] | None = None) -> Adapter:
    """Load a checkpoint (config.json + model.safetensors) from a folder or hub repo id (`values`: its config, if
    already read)."""
    values = values if values is not None else read_config(path_or_id)
    try:
        cls = adapter_class(values["kind"])
    except ValueError as error:
        raise CheckpointError(f"{path_or_id}: {error}") from None
    try:
        config = cls.config_class.from_dict(values)
    except CheckpointError as error:
        raise CheckpointError(f"{path_or_id}: {error}") from None
    adapter = cls.from_pretrained(str(path_or_id), config=config, map_location=map_location)
    return adapter.eval()
