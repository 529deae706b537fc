"""The status line under the pickers: trained or untrained, the parts, sizes and whether the model is loaded."""

from __future__ import annotations

import html

from vlm_demo.combos import Combo
from vlm_demo.models_cache import get_cache
from vlm_demo.pipeline import VisionLanguageModel


def human_count(count: int) -> str:
    for size, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if count >= size:
            return f"{count / size:.2f} {unit}".replace(".00 ", " ")
    return str(count)


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def images_line(allowed: int) -> str:
    return "one image per conversation" if allowed == 1 else f"up to {allowed} images per conversation"


def status_html(combo: Combo, vlm: VisionLanguageModel | None = None) -> str:
    """The trained/untrained badge and one line about the combination."""
    if combo.trained:
        badge = '<span class="vd-badge vd-ok">Trained adapter</span>'
        note = f"checkpoint <code>{html.escape(combo.checkpoint or '')}</code>"
    else:
        badge = '<span class="vd-badge vd-warn">Untrained adapter</span>'
        note = ("no checkpoint ships for this combination yet: the adapter has <b>random weights</b>, so answers "
                "describe noise, not the image")
    parts = f"{html.escape(combo.encoder)} \u2192 <b>{html.escape(combo.adapter)}</b> \u2192 {html.escape(combo.llm)}"
    if vlm is None:
        vlm = _loaded(combo)
    if vlm is not None:
        size = (f"{human_count(vlm.adapter.num_parameters())} adapter parameters \u00b7 "
                f"{plural(vlm.adapter.num_output_tokens, 'image token')} \u00b7 {images_line(vlm.max_images)} \u00b7 "
                + ("LoRA on the LLM (trained with the adapter) \u00b7 " if vlm.lora else "") + "loaded")
    else:
        size = "loads on first use"
    return (f'<div class="vd-status">{badge}<span class="vd-parts">{parts}</span>'
            f'<div class="vd-note">{note}</div><div class="vd-note">{size}</div></div>')


def _loaded(combo: Combo) -> VisionLanguageModel | None:
    cache = get_cache()
    return cache.vlm(combo) if cache.is_loaded(combo) else None
