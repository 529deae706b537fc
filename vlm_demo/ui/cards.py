"""The Models tab: a sortable leaderboard of the shipped adapters (vlm_demo.leaderboard), the model card, loss curve
and parameter count of every adapter checkpoint in assets/adapters, and adapters pushed to the hub, fetched and loaded
by id."""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from vlm_demo.adapters import CheckpointError
from vlm_demo.cards import card_text
from vlm_demo.combos import (
    ADAPTERS_DIR,
    COMBOS,
    DEFAULT_COMBO,
    Combo,
    hub_combo_for,
    loaded_hub_combos,
    shipped_folders,
)
from vlm_demo.encoders import ENCODERS
from vlm_demo.hub import HubError, check_hub_id
from vlm_demo.leaderboard import HEADERS, NOTE, NUMERIC, leaderboard, read_config, rows, safetensors_parameters
from vlm_demo.llms import LLMS
from vlm_demo.ui.status import human_count

LEADERBOARD_WIDTHS = {"combination": "120px", "family": "70px", "encoder": "130px", "LLM": "130px",
                      "trainable params (M)": "104px", "image tokens": "80px",
                      "recipe (stage steps, LLM)": "280px"}  # the others 92px

PICTURE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")
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


def read_card(folder: Path) -> Card | None:
    """A checkpoint folder's card (its text without the metadata), or None if it is not one."""
    config = read_config(folder)
    if config is None:
        return None
    pictures = sorted(folder.glob("*.png"))
    curve = next((p for p in pictures if "loss" in p.name.lower()), pictures[0] if pictures else None)
    return Card(folder.name, folder, config, card_text(folder), curve,
                safetensors_parameters(folder / "model.safetensors"))


def first_card(names: list[str]) -> str | None:
    """The card shown first: the default combination's, else the first shipped one."""
    default = COMBOS[DEFAULT_COMBO].checkpoint
    return default if default in names else (names[0] if names else None)


def shipped_cards(root: Path | None = None) -> list[Card]:
    """Every checkpoint folder under assets/adapters (or `root`)."""
    return [card for card in map(read_card, shipped_folders(root or ADAPTERS_DIR)) if card is not None]


def overview_rows(cards: list[Card]) -> list[dict[str, Any]]:
    """One row per registered combination (shipped or not), then shipped checkpoints no combination names."""
    by_name = {card.name: card for card in cards}
    rows = []
    for name, combo in COMBOS.items():
        if name == DEFAULT_COMBO:
            continue
        card = by_name.get(combo.checkpoint or "")
        rows.append({"name": name, "default": combo is COMBOS[DEFAULT_COMBO], "adapter": combo.adapter,
                     "encoder": combo.encoder, "llm": combo.llm, "card": card, "description": combo.description})
    known = {combo.checkpoint for combo in COMBOS.values()}
    for card in cards:
        if card.name not in known:
            rows.append({"name": card.name, "default": False, "adapter": str(card.config.get("kind", "?")),
                         "encoder": str(card.config.get("encoder", "?")), "llm": str(card.config.get("llm", "?")),
                         "card": card, "description": "shipped checkpoint"})
    return rows


def overview_html(cards: list[Card]) -> str:
    """The table of combinations with a shipped / not shipped badge and the parameter count."""
    lines = []
    for row in overview_rows(cards):
        card = row["card"]
        badge = ('<span class="vd-badge vd-ok">trained \u00b7 shipped</span>' if card else
                 '<span class="vd-badge vd-muted-badge">not shipped</span>')
        params = human_count(card.parameters) if card and card.parameters else "—"
        default = ' <span class="vd-badge vd-default">default</span>' if row["default"] else ""
        lines.append(f"<tr><td><b>{html.escape(row['name'])}</b>{default}<div class=\"vd-note\">"
                     f"{html.escape(row['description'])}</div></td><td>{html.escape(row['encoder'])}</td>"
                     f"<td>{html.escape(row['llm'])}</td><td>{badge}</td><td class=\"vd-num\">{params}</td></tr>")
    return ('<table class="vd-table"><thead><tr><th>Combination</th><th>Encoder</th><th>LLM</th><th>Checkpoint</th>'
            f'<th class="vd-num">Parameters</th></tr></thead><tbody>{"".join(lines)}</tbody></table>')


def facts_html(card: Card) -> str:
    config = card.config
    items = [("Family", config.get("kind", "?")), ("Encoder", config.get("encoder", "?")),
             ("LLM", config.get("llm", "?")), ("Parameters", human_count(card.parameters) if card.parameters else "?"),
             ("Token width in \u2192 out", f"{config.get('token_dim', '?')} \u2192 {config.get('llm_hidden', '?')}")]
    cells = "".join(f'<div class="vd-fact"><div class="vd-fact-k">{html.escape(k)}</div>'
                    f'<div class="vd-fact-v">{html.escape(str(v))}</div></div>' for k, v in items)
    return f'<div class="vd-facts vd-small">{cells}</div>'


def inline_pictures(readme: str, folder: Path) -> tuple[str, set[str]]:
    """The card text with its pictures from the checkpoint folder (`![...](loss_curve.png)`) inlined as data URLs, so
    they render wherever the card is shown; and the names of the pictures inlined."""
    inlined: set[str] = set()

    def inline(match: re.Match) -> str:
        name = match.group(2).strip()
        path = folder / name
        if "/" in name or "\\" in name or path.suffix.lower() != ".png" or not path.is_file():
            return match.group(0)
        inlined.add(name)
        data = base64.b64encode(path.read_bytes()).decode()
        return f"![{match.group(1)}](data:image/png;base64,{data})"

    return PICTURE.sub(inline, readme), inlined


def card_parts(name: str | None) -> tuple[str, str, str | None]:
    """Facts, card text and loss-curve path of the chosen checkpoint (no path when the card text shows the curve)."""
    cards = {card.name: card for card in shipped_cards()}
    card = cards.get(name or "")
    if card is None:
        return "", NO_CARDS if not cards else "Pick a checkpoint above.", None
    readme, inlined = inline_pictures(card.readme, card.folder)
    readme = readme or "_This checkpoint has no README.md model card._"
    curve = card.loss_curve if card.loss_curve and card.loss_curve.name not in inlined else None
    return facts_html(card), readme, str(curve) if curve else None


def show(name: str | None) -> tuple[str, str, Any]:
    facts, text, curve = card_parts(name)
    return facts, text, gr.update(value=curve, visible=curve is not None)


def leaderboard_table() -> dict[str, Any]:
    """The shipped adapters' leaderboard as a Dataframe value (numbers stay numbers, so columns sort by value)."""
    return {"headers": HEADERS, "data": rows(leaderboard())}


def refresh() -> tuple[Any, Any, str, str, str, Any]:
    cards = shipped_cards()
    names = [card.name for card in cards]
    value = first_card(names)
    return (gr.update(choices=names, value=value, visible=bool(names)), leaderboard_table(), overview_html(cards),
            *show(value))


class HubCardError(ValueError):
    """A hub adapter that cannot be fetched or loaded here; the message is one line for the user."""


def hub_card(repo_id: str) -> Card:
    """An adapter pushed with `python -m train push`, fetched by hub id (once, into the hub cache)."""
    from vlm_demo.checkpoint import Checkpoint

    try:
        repo_id = check_hub_id(repo_id.strip())
        checkpoint = Checkpoint.resolve(repo_id)
    except (HubError, CheckpointError) as error:
        raise HubCardError(str(error)) from None
    card = read_card(checkpoint.folder)
    if card is None:
        raise HubCardError(f"{repo_id}: its config.json is not an adapter config")
    card.name = repo_id
    return card


def hub_combo(card: Card) -> Combo:
    """The combination a hub adapter names; only the app's registered encoders and LLMs are loaded for it."""
    encoder, llm = (str(card.config.get(key, "")) for key in ("encoder", "llm"))
    if encoder not in ENCODERS or llm not in LLMS:
        raise HubCardError(f"{card.name} needs encoder '{encoder}' and LLM '{llm}'; the app loads only its "
                           f"registered ones (python -m vlm_demo list)")
    return hub_combo_for(card.name, card.config)


def load_from_hub(repo_id: str) -> tuple[str, str, Any, str]:
    """Fetch a hub adapter's card and load it (with its encoder, LLM and LoRA) into the shared model cache; while
    it stays there the Chat and Compare pickers offer it."""
    from vlm_demo.models_cache import LoadError, get_cache

    try:
        card = hub_card(repo_id)
    except HubCardError as error:
        return "", "", gr.update(value=None, visible=False), f"⚠ {error}"
    text, inlined = inline_pictures(card.readme, card.folder)
    facts, text = facts_html(card), text or "_This adapter has no README.md model card._"
    shown = card.loss_curve if card.loss_curve and card.loss_curve.name not in inlined else None
    curve = gr.update(value=str(shown) if shown else None, visible=shown is not None)
    try:
        vlm = get_cache().vlm(hub_combo(card))
    except (HubCardError, LoadError, CheckpointError) as error:
        return facts, text, curve, f"⚠ {error}"
    return facts, text, curve, (f"Loaded `{card.name}` ({vlm.status}) with {card.config['encoder']} and "
                                f"{card.config['llm']} into the app's model cache; it is picked on the left and "
                                "offered in Chat and Compare while it stays loaded.")


def pick_loaded(repo_id: str) -> tuple[Any, Any, Any, Any]:
    """After a hub load: the sidebar's encoder, adapter, LLM and status set to the loaded adapter's, if it loaded."""
    from vlm_demo.models_cache import get_cache
    from vlm_demo.ui.pickers import adapter_choices
    from vlm_demo.ui.status import status_html

    named = [c for c in loaded_hub_combos() if c.checkpoint == (repo_id or "").strip()]
    combo = next((c for c in named if get_cache().is_loaded(c)), None)
    if combo is None:
        return gr.update(), gr.update(), gr.update(), gr.update()
    return (gr.update(value=combo.encoder), gr.update(choices=adapter_choices(combo.encoder, combo.llm),
                                                      value=combo.name), gr.update(value=combo.llm), status_html(combo))


def build(controls: Any = None) -> None:
    """Render the Models tab; given the sidebar's controls, an adapter loaded from the hub is picked there."""
    cards = shipped_cards()
    names = [card.name for card in cards]
    gr.Markdown("Every registered combination and whether its trained adapter ships with the app. Pick a shipped "
                "checkpoint to read its card: data, stages, steps, held-out metrics and loss curve.",
                elem_classes=["vd-lead"])
    board = leaderboard_table()
    gr.Markdown(f"**Leaderboard of the shipped adapters** (sort by any column from its header's ⋮ menu). {NOTE}",
                elem_classes=["vd-note"], elem_id="vd-leaderboard-note")
    table = gr.Dataframe(board, headers=HEADERS, datatype=["number" if h in NUMERIC else "str" for h in HEADERS],
                         interactive=False, wrap=True, visible=bool(board["data"]), pinned_columns=1,
                         column_widths=[LEADERBOARD_WIDTHS.get(h, "92px") for h in HEADERS], elem_id="vd-leaderboard",
                         label="Leaderboard", show_label=False)
    overview = gr.HTML(overview_html(cards), elem_id="vd-models-table")
    with gr.Row(equal_height=False):
        picker = gr.Dropdown(names, value=first_card(names), label="Model card", visible=bool(names),
                             scale=4, elem_id="vd-card-picker")
        reload = gr.Button("\u21bb Rescan", size="sm", scale=1, min_width=100)
    facts0, text0, curve0 = card_parts(first_card(names))
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            facts = gr.HTML(facts0)
        with gr.Column(scale=2):
            curve = gr.Image(curve0, label="Loss curve", interactive=False, visible=curve0 is not None, height=260,
                             elem_id="vd-loss-curve", buttons=["fullscreen", "download"])
    with gr.Row(equal_height=False):
        hub_id = gr.Textbox(label="Adapter on the hub", placeholder="owner/name (pushed with python -m train push)",
                            scale=4, elem_id="vd-hub-id")
        fetch = gr.Button("Load from the hub", size="sm", scale=1, min_width=140)
    hub_status = gr.Markdown(elem_id="vd-hub-status")
    text = gr.Markdown(text0, elem_id="vd-card-text")
    picker.change(show, picker, [facts, text, curve], api_name="model_card", queue=False)
    reload.click(refresh, None, [picker, table, overview, facts, text, curve], api_visibility="private", queue=False)
    loading = fetch.click(load_from_hub, hub_id, [facts, text, curve, hub_status], api_name="load_hub_adapter",
                          concurrency_limit=1)
    if controls is not None:
        loading.then(pick_loaded, hub_id, [controls.encoder, controls.adapter, controls.llm, controls.status],
                     api_visibility="private", queue=False)
