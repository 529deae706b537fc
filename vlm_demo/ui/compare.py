"""The Compare tab: one image and prompt through 2-4 adapters on the same encoder, LLM and seed, side by side; each
column says how its adapter was trained and its main held-out score (vlm_demo.leaderboard)."""

from __future__ import annotations

import html
import re
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import gradio as gr

from vlm_demo.combos import Combo, adapter_families, trained_families
from vlm_demo.leaderboard import entry_for
from vlm_demo.pipeline import DEFAULT_PROMPT, MAX_MESSAGE_CHARS
from vlm_demo.ui.common import DEFAULT, MAX_NEW_TOKENS, check_prompt, gpu_for, load_image, user_errors
from vlm_demo.ui.gate.traffic import request_gone
from vlm_demo.ui.pickers import adapter_choices
from vlm_demo.ui.sidebar import Controls, SidebarValues, sidebar_handler
from vlm_demo.ui.status import human_count

MIN_ADAPTERS, MAX_ADAPTERS = 2, 4
WORD = re.compile(r"\S+")


def default_picks(encoder: str, llm: str) -> list[str]:
    """Trained adapters first, then the other families the encoder can run (registry order), up to three."""
    picks = trained_families(encoder, llm)
    return (picks + [kind for kind in adapter_families(encoder) if kind not in picks])[:3]


UNTRAINED = "untrained (random adapter)"


def column_facts(combo: Combo) -> dict[str, str | None]:
    """A column's recipe and main held-out score from the leaderboard; untrained combinations say so."""
    if not combo.trained:
        return {"recipe": UNTRAINED, "held_out": None}
    entry = entry_for(combo.checkpoint)
    if entry is None:
        return {"recipe": "trained checkpoint (no card recipe)", "held_out": None}
    main = entry.main_score
    return {"recipe": entry.recipe, "held_out": f"held-out {main[0]} {main[1]:.2f}" if main else None}


def facts_line(result: dict[str, Any]) -> str:
    if not result.get("recipe"):
        return ""
    score = f' · <b>{html.escape(result["held_out"])}</b>' if result.get("held_out") else ""
    return f'<div class="vd-recipe vd-note">{html.escape(result["recipe"])}{score}</div>'


def _key(word: str) -> str:
    return word.strip(".,;:!?\"'()[]").lower()


def distinct_words(text: str, others: list[str]) -> set[int]:
    """Indices of the words in `text` that appear in none of the other captions."""
    seen = {_key(word) for other in others for word in WORD.findall(other)}
    return {index for index, word in enumerate(text.split()) if _key(word) and _key(word) not in seen}


def marked(text: str, changed: set[int]) -> str:
    words = text.split()
    return " ".join(f"<mark>{html.escape(w)}</mark>" if i in changed else html.escape(w) for i, w in enumerate(words))


def render(results: list[dict[str, Any]], pending: list[str]) -> str:
    """Cards side by side; words that no other finished caption uses are highlighted."""
    done = [r for r in results if r.get("done")]
    cards = []
    for result in results:
        others = [r["caption"] for r in done if r is not result]
        body = marked(result["caption"], distinct_words(result["caption"], others)) if result.get("done") else \
            html.escape(result["caption"]) + '<span class="vd-cursor">\u258d</span>'
        badge = ('<span class="vd-badge vd-ok">trained</span>' if result["trained"]
                 else '<span class="vd-badge vd-warn">untrained</span>')
        if result.get("llm_lora"):
            badge += ('<span class="vd-badge vd-ok" title="this adapter was trained together with a LoRA on the '
                      'LLM\'s attention; it is switched on only for this column">+ LoRA</span>')
        if result.get("done"):
            same = [r["adapter"] for r in done if r is not result and r["caption"].strip() == result["caption"].strip()]
            note = f'<div class="vd-same">same caption as {", ".join(same)}</div>' if same else ""
            stats = (f'<div class="vd-stats"><span><b>{result["tokens"]}</b> tokens</span>'
                     f'<span><b>{result["ttft_s"]:.2f} s</b> to first token</span>'
                     f'<span><b>{result["tokens_per_s"]:.1f}</b> tokens/s</span>'
                     f'<span><b>{human_count(result["parameters"])}</b> parameters</span></div>')
        else:
            note, stats = "", '<div class="vd-stats"><span>generating\u2026</span></div>'
        cards.append(f'<div class="vd-card"><div class="vd-card-head"><span class="vd-card-title">'
                     f'{html.escape(result["adapter"])}</span>{badge}</div>{facts_line(result)}'
                     f'<div class="vd-caption">{body or "&nbsp;"}</div>{note}{stats}</div>')
    for name in pending:
        cards.append(f'<div class="vd-card vd-pending"><div class="vd-card-head"><span class="vd-card-title">'
                     f'{html.escape(name)}</span></div><div class="vd-caption vd-muted">waiting\u2026</div></div>')
    return f'<div class="vd-grid vd-cols-{max(1, len(cards))}">{"".join(cards)}</div>'


def _public(result: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in result.items() if key != "done"}


GPU_START_S, GPU_LOAD_S, GPU_TOKENS_PER_S = 10, 10, 20  # ZeroGPU slot: start-up, a column's loading, decoding


def gpu_seconds(image: Any, prompt: str, adapters: list[str], encoder: str, llm: str, max_new_tokens: int,
                *rest: Any, **options: Any) -> int:
    """A Compare call's ZeroGPU slot: each column may load its adapter (and LLM) and decode up to max new tokens;
    four columns of MAX_NEW_TOKENS (256) take 101 s."""
    columns = min(max(len(adapters or []), 1), MAX_ADAPTERS)
    tokens = max_new_tokens if isinstance(max_new_tokens, (int, float)) and max_new_tokens > 0 else MAX_NEW_TOKENS
    return int(GPU_START_S + columns * (GPU_LOAD_S + tokens / GPU_TOKENS_PER_S))


@user_errors
@gpu_for(gpu_seconds)
@sidebar_handler(without=("adapter",))
def compare(image: Any, prompt: str, adapters: list[str], sidebar: SidebarValues,
            progress: gr.Progress = gr.Progress()) -> Iterator[tuple[str, list[dict[str, Any]]]]:  # noqa: B008
    """Caption the image with each adapter in turn (same seed), streaming each column."""
    adapters = list(dict.fromkeys(adapters or []))
    if not MIN_ADAPTERS <= len(adapters) <= MAX_ADAPTERS:
        raise gr.Error(f"Pick {MIN_ADAPTERS} to {MAX_ADAPTERS} adapters to compare (you picked {len(adapters)}).",
                       title="Pick adapters")
    question = (prompt or "").strip() or DEFAULT_PROMPT
    check_prompt(question)
    picture = load_image(image)
    columns = [replace(sidebar, adapter=adapter) for adapter in adapters]
    combos = [column.checked()[0] for column in columns]  # any impossible column is refused before loading
    gone = request_gone()
    results: list[dict[str, Any]] = []
    for index, (column, combo) in enumerate(zip(columns, combos)):
        def report(fraction: float, desc: str | None = None, index: int = index, combo=combo) -> None:
            progress((index + fraction) / len(combos), desc=f"{combo.adapter}: {desc}")

        _, options, vlm = column.pick(report)
        result = {"adapter": combo.adapter, "trained": combo.trained, "caption": "", "tokens": 0, "ttft_s": 0.0,
                  "tokens_per_s": 0.0, "seconds": 0.0, "parameters": vlm.adapter.num_parameters(),
                  "image_tokens": vlm.adapter.num_output_tokens, "llm_lora": vlm.lora is not None,
                  **column_facts(combo), "done": False}
        results.append(result)
        start, first = time.perf_counter(), None
        for piece in vlm.chat(picture, question, None, options, cancelled=gone):
            if piece and first is None:
                first = time.perf_counter() - start
            result["caption"] += piece
            yield render(results, adapters[index + 1:]), [_public(r) for r in results]
        total = time.perf_counter() - start
        text = result["caption"].strip()
        tokens = len(vlm.llm.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else 0
        first = first if first is not None else total
        result.update(caption=text, tokens=tokens, ttft_s=round(first, 3), seconds=round(total, 3), done=True,
                      tokens_per_s=round((tokens - 1) / (total - first), 2) if tokens > 1 and total > first else 0.0)
        yield render(results, adapters[index + 1:]), [_public(r) for r in results]


def build(controls: Controls) -> None:
    """Render the Compare tab's body."""
    gr.Markdown("Run the same image and prompt through **2\u20134 adapters** on the encoder and LLM picked on the "
                "left, with the same seed. Words found in no other column are <mark>highlighted</mark>. Each "
                "column names its adapter's training recipe and main held-out score (test split); different recipes "
                "are not directly comparable.",
                elem_classes=["vd-lead"])
    with gr.Row():
        adapters = gr.Dropdown(adapter_choices(DEFAULT.encoder, DEFAULT.llm), value=default_picks(DEFAULT.encoder,
                               DEFAULT.llm), multiselect=True, max_choices=MAX_ADAPTERS, label="Adapters to compare",
                               scale=1, elem_id="vd-compare-adapters")
        with gr.Column(scale=1):
            prompt = gr.Textbox(DEFAULT_PROMPT, label="Prompt", elem_id="vd-compare-prompt",
                                max_length=MAX_MESSAGE_CHARS)
            run = gr.Button("Compare side by side", variant="primary", elem_id="vd-compare-run")
    board = gr.HTML(render([], []).replace("</div>", '<div class="vd-empty">Results appear here, one column per '
                                           'adapter.</div></div>', 1), elem_id="vd-compare-board")
    with gr.Accordion("Raw results (JSON)", open=False):
        raw = gr.JSON(label="Results", elem_id="vd-compare-json")

    def offer(encoder: str, llm: str, picked: list[str]) -> Any:
        choices = adapter_choices(encoder, (llm or DEFAULT.llm).strip())
        allowed = {value for _, value in choices}
        kept = [p for p in picked or [] if p in allowed] or default_picks(encoder, (llm or DEFAULT.llm).strip())
        return gr.update(choices=choices, value=kept[:MAX_ADAPTERS])

    for component in (controls.encoder, controls.llm):
        component.input(offer, [controls.encoder, controls.llm, adapters], [adapters], api_visibility="private",
                        queue=False)
    controls.adapter.change(offer, [controls.encoder, controls.llm, adapters], [adapters], api_visibility="private",
                            queue=False)  # an adapter loaded from the hub (Models tab) is picked there
    run.click(compare, [controls.image, prompt, adapters, controls.encoder, controls.llm, *controls.settings],
              [board, raw], api_name="compare", concurrency_id="generate", concurrency_limit=2)
