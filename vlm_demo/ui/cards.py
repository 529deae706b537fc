"""The Models tab: the model card, loss curve and parameter count of every adapter checkpoint in assets/adapters."""

from __future__ import annotations

import html
import json
import math
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from vlm_demo.combos import ADAPTERS_DIR, COMBOS, DEFAULT_COMBO
from vlm_demo.ui.common import human_count

FRONT_MATTER = re.compile(r"\A---\s*\n.*?\n---\s*\n", re.DOTALL)
NO_CARDS = ("### No trained adapters ship yet\nEvery combination currently runs with a **randomly initialised "
            "adapter**, so its answers are not meaningful. Trained checkpoints appear here (and in the pickers) as "
            "soon as folders with `config.json`, `model.safetensors` and a `README.md` card are added to "
            "`assets/adapters/`.")


@dataclass
class Card:
    """One shipped checkpoint folder."""

    name: str
    folder: Path
    config: dict[str, Any]
    readme: str
    loss_curve: Path | None
    parameters: int | None


def safetensors_parameters(path: Path) -> int | None:
    """Number of weights in a safetensors file, read from its header (nothing is loaded)."""
    try:
        with path.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > 100_000_000:
                return None
            header = json.loads(handle.read(length))
        return sum(math.prod(entry["shape"]) for key, entry in header.items() if key != "__metadata__")
    except (OSError, ValueError, KeyError, TypeError, struct.error):
        return None


def read_card(folder: Path) -> Card | None:
    """A checkpoint folder's card, or None if it is not one."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(config, dict):
        return None
    readme_file = folder / "README.md"
    readme = readme_file.read_text(encoding="utf-8", errors="replace") if readme_file.is_file() else ""
    readme = FRONT_MATTER.sub("", readme).strip()
    pictures = sorted(folder.glob("*.png"))
    curve = next((p for p in pictures if "loss" in p.name.lower()), pictures[0] if pictures else None)
    return Card(folder.name, folder, config, readme, curve, safetensors_parameters(folder / "model.safetensors"))


def shipped_cards(root: Path = ADAPTERS_DIR) -> list[Card]:
    if not root.is_dir():
        return []
    cards = [read_card(folder) for folder in sorted(root.iterdir()) if folder.is_dir()]
    return [card for card in cards if card is not None]


def overview_rows(cards: list[Card]) -> list[list[str]]:
    """One row per registered combination: shipped or not, and its parameter count when shipped."""
    by_name = {card.name: card for card in cards}
    rows = []
    for name, combo in COMBOS.items():
        if name == DEFAULT_COMBO:
            continue
        card = by_name.get(combo.checkpoint or "")
        state = "\u2705 shipped" if card else "not shipped yet"
        params = human_count(card.parameters) if card and card.parameters else ""
        rows.append([name + (" (default)" if combo is COMBOS[DEFAULT_COMBO] else ""), combo.adapter, combo.encoder,
                     combo.llm, state, params])
    known = {combo.checkpoint for combo in COMBOS.values()}
    for card in cards:  # checkpoints that no registered combination names
        if card.name not in known:
            rows.append([card.name, str(card.config.get("kind", "?")), str(card.config.get("encoder", "?")),
                         str(card.config.get("llm", "?")), "\u2705 shipped (extra)",
                         human_count(card.parameters) if card.parameters else ""])
    return rows


def facts_html(card: Card) -> str:
    config = card.config
    items = [("Family", config.get("kind", "?")), ("Encoder", config.get("encoder", "?")),
             ("LLM", config.get("llm", "?")), ("Parameters", human_count(card.parameters) if card.parameters else "?"),
             ("Token width in \u2192 out", f"{config.get('token_dim', '?')} \u2192 {config.get('llm_hidden', '?')}")]
    cells = "".join(f'<div class="vd-fact"><div class="vd-fact-k">{html.escape(k)}</div>'
                    f'<div class="vd-fact-v">{html.escape(str(v))}</div></div>' for k, v in items)
    return f'<div class="vd-facts">{cells}</div>'


def card_parts(name: str | None) -> tuple[str, str, str | None]:
    """Facts, card text and loss-curve path of the chosen checkpoint."""
    cards = {card.name: card for card in shipped_cards()}
    card = cards.get(name or "")
    if card is None:
        return "", NO_CARDS if not cards else "Pick a checkpoint above.", None
    readme = card.readme or "_This checkpoint has no README.md model card._"
    return facts_html(card), readme, str(card.loss_curve) if card.loss_curve else None


def show(name: str | None) -> tuple[str, str, Any]:
    facts, text, curve = card_parts(name)
    return facts, text, gr.update(value=curve, visible=curve is not None)


def refresh() -> tuple[Any, list[list[str]], str, str, Any]:
    cards = shipped_cards()
    names = [card.name for card in cards]
    value = names[0] if names else None
    return (gr.update(choices=names, value=value, visible=bool(names)), overview_rows(cards), *show(value))


def build() -> None:
    """Render the Models tab."""
    cards = shipped_cards()
    names = [card.name for card in cards]
    gr.Markdown("Every registered combination and whether its trained adapter ships with the app. Pick a shipped "
                "checkpoint to read its card: data, stages, steps, held-out metrics and loss curve.",
                elem_classes=["vd-lead"])
    overview = gr.Dataframe(overview_rows(cards), headers=["Combination", "Adapter", "Encoder", "LLM", "Trained",
                                                           "Parameters"], interactive=False, elem_id="vd-models-table",
                            max_height=520, column_widths=["18%", "13%", "20%", "23%", "14%", "12%"])
    with gr.Row(equal_height=True):
        picker = gr.Dropdown(names, value=names[0] if names else None, label="Model card", visible=bool(names),
                             scale=4, elem_id="vd-card-picker")
        reload = gr.Button("\u21bb Rescan assets/adapters", scale=1, min_width=120)
    facts0, text0, curve0 = card_parts(names[0] if names else None)
    facts = gr.HTML(facts0)
    with gr.Row():
        with gr.Column(scale=3):
            text = gr.Markdown(text0, elem_id="vd-card-text")
        with gr.Column(scale=2):
            curve = gr.Image(curve0, label="Loss curve", interactive=False, visible=curve0 is not None,
                             elem_id="vd-loss-curve",
                             buttons=["fullscreen", "download"])
    picker.change(show, picker, [facts, text, curve], api_name="model_card", queue=False)
    reload.click(refresh, None, [picker, overview, facts, text, curve], api_visibility="private", queue=False)
