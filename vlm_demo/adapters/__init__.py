"""Adapter registry: family name -> class; build new adapters or load checkpoints by folder or hub id."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlm_demo.adapters.attention import AttentionAdapter
from vlm_demo.adapters.base import (
    LORA_FOLDER,
    Adapter,
    AdapterConfig,
    CheckpointError,
    check_compatible,
    lora_folder,
    read_config,
)
from vlm_demo.adapters.linear import LinearAdapter
from vlm_demo.adapters.mlp import MLPAdapter
from vlm_demo.adapters.multistage import MultiStageAdapter
from vlm_demo.adapters.perceiver import PerceiverAdapter
from vlm_demo.adapters.query import QueryAdapter
from vlm_demo.adapters.tinylm import TinyLMAdapter

ADAPTERS: dict[str, type[Adapter]] = {
    "linear": LinearAdapter,
    "mlp": MLPAdapter,
    "attention": AttentionAdapter,
    "query": QueryAdapter,
    "perceiver": PerceiverAdapter,
    "multistage": MultiStageAdapter,
    "tinylm": TinyLMAdapter,
}

__all__ = ["ADAPTERS", "LORA_FOLDER", "Adapter", "AdapterConfig", "CheckpointError", "build_adapter",
           "check_compatible", "load_adapter", "lora_folder"]


def adapter_class(kind: str) -> type[Adapter]:
    if kind not in ADAPTERS:
        raise ValueError(f"unknown adapter family '{kind}'; known: {', '.join(ADAPTERS)}")
    return ADAPTERS[kind]


def build_adapter(kind: str, **config: Any) -> Adapter:
    """A new, randomly initialised adapter of one family."""
    cls = adapter_class(kind)
    return cls(cls.config_class.from_dict({**config, "kind": kind}))


def load_adapter(path_or_id: str | Path, map_location: str = "cpu") -> Adapter:
    """Load a checkpoint (config.json + model.safetensors) from a folder or hub repo id."""
    values = read_config(path_or_id)
    try:
        cls = adapter_class(values["kind"])
    except ValueError as error:
        raise CheckpointError(f"{path_or_id}: {error}") from None
    adapter = cls.from_pretrained(str(path_or_id), config=cls.config_class.from_dict(values), map_location=map_location)
    return adapter.eval()
