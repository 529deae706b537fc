"""Adapter registry: family name -> class; build new adapters, or load checkpoints (through
`vlm_demo.checkpoint.Checkpoint`, which resolves a folder or hub id once)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from vlm_demo.adapters.attention import AttentionAdapter
from vlm_demo.adapters.base import (
    ADAPTERS,
    ENCODER_WEIGHTS,
    LORA_FOLDER,
    Adapter,
    AdapterConfig,
    CheckpointError,
    adapter_class,
    check_compatible,
)
from vlm_demo.adapters.label import LabelAdapter
from vlm_demo.adapters.linear import LinearAdapter
from vlm_demo.adapters.mlp import MLPAdapter
from vlm_demo.adapters.multistage import MultiStageAdapter
from vlm_demo.adapters.perceiver import PerceiverAdapter
from vlm_demo.adapters.query import QueryAdapter
from vlm_demo.adapters.tinylm import TinyLMAdapter

if TYPE_CHECKING:
    from vlm_demo.checkpoint import Checkpoint
    from vlm_demo.encoders import VisionEncoder
    from vlm_demo.llms import LanguageModel

ADAPTERS.update({  # the registry (it lives in adapters/base.py, so a checkpoint finds its family from there)
    "linear": LinearAdapter,
    "mlp": MLPAdapter,
    "attention": AttentionAdapter,
    "query": QueryAdapter,
    "perceiver": PerceiverAdapter,
    "multistage": MultiStageAdapter,
    "tinylm": TinyLMAdapter,
    "label": LabelAdapter,
})

__all__ = ["ADAPTERS", "ENCODER_WEIGHTS", "LORA_FOLDER", "Adapter", "AdapterConfig", "CheckpointError", "adapter_class",
           "adapter_for", "adapter_needs", "build_adapter", "check_compatible", "load_adapter"]


def build_adapter(kind: str, **config: Any) -> Adapter:
    """A new, randomly initialised adapter of one family."""
    cls = adapter_class(kind)
    return cls(cls.config_class.from_dict({**config, "kind": kind}))


def adapter_needs(kind: str, options: dict[str, Any] | None = None) -> frozenset[str]:
    """What an adapter of this family with these options needs from its encoder (asked before building one)."""
    return adapter_class(kind).config_class.from_dict({**(options or {}), "kind": kind}).needs


def adapter_for(encoder: VisionEncoder, target: str, target_width: int, kind: str = "",
                options: dict[str, Any] | None = None, checkpoint: Checkpoint | str | Path | None = None,
                llm: LanguageModel | None = None) -> Adapter:
    """The one way the pipeline, training and analysis get an adapter between `encoder` and a target (an LLM, or a
    teacher encoder for distillation): a checkpoint (folder, hub id or resolved `Checkpoint`) checked against both
    sides, else a new `kind` adapter, random apart from what the family starts from its encoder and `llm` (e.g.
    class-name embeddings)."""
    if checkpoint:
        from vlm_demo.checkpoint import Checkpoint

        checkpoint = Checkpoint.resolve(checkpoint)
        checkpoint.check(encoder.name, encoder.embed_dim, target, target_width)
        return checkpoint.adapter()
    adapter = build_adapter(kind, encoder=encoder.name, token_dim=encoder.embed_dim,
                            num_encoder_tokens=encoder.num_tokens, stage_dims=encoder.stage_dims, llm=target,
                            llm_hidden=target_width, **(options or {}))
    if llm is not None:
        adapter.start_from(encoder, llm)
    return adapter


def load_adapter(checkpoint: Checkpoint | str | Path, map_location: str = "cpu") -> Adapter:
    """A trained adapter (config.json + model.safetensors) from a folder, a hub repo id or a resolved `Checkpoint`, in
    eval mode; not checked against any combination (`adapter_for` does that)."""
    from vlm_demo.checkpoint import Checkpoint

    return Checkpoint.resolve(checkpoint).adapter(map_location)
