"""What the encoder, adapter and LLM pickers offer, each choice labelled with where it comes from."""

from __future__ import annotations

from vlm_demo.combos import adapter_families, find_combo, hub_combos
from vlm_demo.encoders import ENCODERS
from vlm_demo.llms import LLMS


def encoder_choices() -> list[tuple[str, str]]:
    return [(f"{name}{_where(spec.availability())}", name) for name, spec in ENCODERS.items()]


def llm_choices() -> list[tuple[str, str]]:
    return [(f"{name}{_where(spec.availability())}", name) for name, spec in LLMS.items()]


def _where(availability: str) -> str:
    if "packaged" in availability:
        return "  \u00b7  offline"
    if "hub cache" in availability:
        return "  \u00b7  hub cache"
    return "  \u00b7  needs the hub"


def adapter_choices(encoder: str, llm: str) -> list[tuple[str, str]]:
    """(label, value) pairs: each family, labelled with whether a trained checkpoint ships for this encoder and LLM,
    then the adapters loaded by hub id for them while they stay in the model cache (value `hub:owner/name`)."""
    from vlm_demo.models_cache import get_cache

    choices = []
    for kind in adapter_families(encoder):
        combo = find_combo(encoder, kind, llm)
        state = "trained" if combo is not None and combo.trained else "untrained"
        choices.append((f"{kind}  \u00b7  {state}", kind))
    cache = get_cache()
    for combo in hub_combos(encoder, llm):
        if cache.is_loaded(combo):
            choices.append((f"{combo.checkpoint} ({combo.adapter})  \u00b7  from the hub", combo.name))
    return choices
