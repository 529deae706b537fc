"""The Chat tab: a streamed conversation about the image, with describe, regenerate and clear; plus the caption API."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import gradio as gr
from gradio.data_classes import FileData

from vlm_demo.llms import GenerationSettings
from vlm_demo.pipeline import DEFAULT_PROMPT, MAX_MESSAGE_CHARS
from vlm_demo.ui.common import (
    DEFAULT,
    DEFAULT_SETTINGS,
    check_prompt,
    gpu,
    load_image,
    load_vlm,
    message_text,
    request_gone,
    resolve_combo,
    settings_from,
    user_errors,
)
from vlm_demo.ui.sidebar import Controls
from vlm_demo.ui.status import status_html

Messages = list[dict[str, Any]]
GENERATION = {"concurrency_id": "generate", "concurrency_limit": 2}


def to_pairs(history: Messages | None) -> list[tuple[str, str]]:
    """Chatbot messages -> finished (user, assistant) turns for the pipeline."""
    pairs, user = [], None
    for message in history or []:
        text = message_text(message.get("content"))
        if message.get("role") == "user":
            user = text
        elif message.get("role") == "assistant" and user is not None:
            pairs.append((user, text))
            user = None
    return pairs


def _answer(image: Any, message: str, history: Messages | None, encoder: str, adapter: str, llm: str,
            settings: GenerationSettings, progress: Any) -> Iterator[tuple[Messages, str]]:
    question = (message or "").strip() or DEFAULT_PROMPT
    turns = to_pairs(history)
    check_prompt(question, turns)
    picture = load_image(image)
    combo = resolve_combo(encoder, adapter, llm)
    vlm = load_vlm(combo, progress)
    status = status_html(combo, vlm)
    shown = [{"role": role, "content": text} for user, answer in turns for role, text in
             (("user", user), ("assistant", answer))]
    shown += [{"role": "user", "content": question}, {"role": "assistant", "content": ""}]
    yield shown, status
    answer = ""
    for piece in vlm.chat(picture, question, turns, settings, cancelled=request_gone()):
        answer += piece
        shown[-1]["content"] = answer
        yield shown, status
    shown[-1]["content"] = answer.strip() or "(the model gave an empty answer)"
    yield shown, status


@user_errors
@gpu
def respond(image: Any, message: str, history: Messages, encoder: str, adapter: str, llm: str, max_new_tokens: int,
            temperature: float, top_p: float, seed: int,
            progress: gr.Progress = gr.Progress()) -> Iterator[tuple[Messages, Any, str]]:  # noqa: B008
    """Stream the answer to a message about the image; the message box is emptied once, not on every piece."""
    shown: Messages = []
    status = ""
    settings = settings_from(max_new_tokens, temperature, top_p, seed)
    for index, (shown, status) in enumerate(_answer(image, message, history, encoder, adapter, llm, settings,
                                                     progress)):
        yield shown, "" if index == 0 else gr.skip(), status
    yield shown, "", status


@user_errors
@gpu
def describe(image: Any, history: Messages, encoder: str, adapter: str, llm: str, max_new_tokens: int,
             temperature: float, top_p: float, seed: int,
             progress: gr.Progress = gr.Progress()) -> Iterator[tuple[Messages, str]]:  # noqa: B008
    """Ask for a description of the image (a caption) in the conversation."""
    yield from _answer(image, DEFAULT_PROMPT, history, encoder, adapter, llm,
                       settings_from(max_new_tokens, temperature, top_p, seed), progress)


@user_errors
@gpu
def regenerate(image: Any, history: Messages, encoder: str, adapter: str, llm: str, max_new_tokens: int,
               temperature: float, top_p: float, seed: int,
               progress: gr.Progress = gr.Progress()) -> Iterator[tuple[Messages, str]]:  # noqa: B008
    """Answer the last user message again (change the seed or temperature for a different answer)."""
    history = list(history or [])
    last = max((i for i, m in enumerate(history) if m.get("role") == "user"), default=None)
    if last is None:
        raise gr.Error("There is nothing to regenerate yet: send a message first.", title="Nothing to regenerate")
    message = message_text(history[last].get("content"))
    yield from _answer(image, message, history[:last], encoder, adapter, llm,
                       settings_from(max_new_tokens, temperature, top_p, seed), progress)


@gpu
def caption(image: FileData, prompt: str = DEFAULT_PROMPT, encoder: str = DEFAULT.encoder,
            adapter: str = DEFAULT.adapter, llm: str = DEFAULT.llm,
            max_new_tokens: int = DEFAULT_SETTINGS.max_new_tokens, temperature: float = DEFAULT_SETTINGS.temperature,
            top_p: float = DEFAULT_SETTINGS.top_p, seed: int = DEFAULT_SETTINGS.seed) -> dict:
    """Caption one image: returns caption, combination, adapter_trained and seconds."""
    start = time.perf_counter()
    check_prompt((prompt or "").strip())
    picture = load_image(image)
    combo = resolve_combo(encoder, adapter, llm)
    options = settings_from(max_new_tokens, temperature, top_p, seed)
    vlm = load_vlm(combo)
    text = vlm.caption([picture], (prompt or "").strip() or DEFAULT_PROMPT, options, cancelled=request_gone())[0]
    return {"caption": text, "combination": combo.name, "encoder": combo.encoder, "adapter": combo.adapter,
            "llm": combo.llm, "adapter_trained": combo.trained, "seconds": round(time.perf_counter() - start, 3)}


def _lock() -> list[Any]:
    return [gr.update(interactive=False)] * 4


def _unlock() -> list[Any]:
    return [gr.update(interactive=True)] * 4


def build(controls: Controls) -> None:
    """Render the Chat tab's body and wire it to the shared controls."""
    chatbot = gr.Chatbot(height=470, label="Conversation", elem_id="vd-chatbot", buttons=["copy", "copy_all"],
                         feedback_options=None,
                         placeholder="<h3>Ask about the image</h3>Pick an example or upload a photo on the left, then "
                                     "press <b>Describe</b> or type a question.")
    with gr.Row(equal_height=True):
        message = gr.Textbox(placeholder="Ask something about the image\u2026", show_label=False, scale=6,
                             container=False, elem_id="vd-message", max_lines=4, max_length=MAX_MESSAGE_CHARS)
        send = gr.Button("Send", variant="primary", scale=1, min_width=90, elem_id="vd-send")
    with gr.Row():
        describe_button = gr.Button("Describe the image", variant="secondary", elem_id="vd-describe")
        regenerate_button = gr.Button("\u21bb Regenerate", elem_id="vd-regenerate")
        clear_button = gr.Button("Clear", elem_id="vd-clear")

    shared = [*controls.combination, *controls.settings]
    outputs = [chatbot, controls.status]
    busy = [message, send, describe_button, regenerate_button]  # one answer at a time per page
    events = [
        (send.click, respond, [controls.image, message, chatbot, *shared], [chatbot, message, controls.status],
         {"api_name": "chat"}),
        (message.submit, respond, [controls.image, message, chatbot, *shared], [chatbot, message, controls.status],
         {"api_visibility": "private"}),
        (describe_button.click, describe, [controls.image, chatbot, *shared], outputs, {"api_name": "describe"}),
        (regenerate_button.click, regenerate, [controls.image, chatbot, *shared], outputs, {"api_name": "regenerate"}),
    ]
    for trigger, function, inputs, targets, api in events:
        trigger(_lock, None, busy, api_visibility="private", queue=False).then(
            function, inputs, targets, **api, **GENERATION).then(_unlock, None, busy, api_visibility="private",
                                                                 queue=False)
    clear_button.click(lambda: ([], ""), None, [chatbot, message], api_visibility="private", queue=False)
    controls.image.change(lambda: [], None, [chatbot], api_visibility="private", queue=False)
    gr.api(user_errors(caption), api_name="caption", **GENERATION)
