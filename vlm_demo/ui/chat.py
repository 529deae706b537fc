"""The Chat tab: a streamed conversation about one or more images (recorded in the transcript), with describe, stop,
retry, undo and edit through the Chatbot's own events; plus the caption APIs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import gradio as gr
from gradio.data_classes import FileData

from vlm_demo.pipeline import DEFAULT_PROMPT, IMAGE_TOKEN_BUDGET, MAX_IMAGES
from vlm_demo.ui.common import (
    check_prompt,
    gpu,
    load_image,
    message_files,
    message_text,
    stored_upload,
    user_errors,
)
from vlm_demo.ui.gate.traffic import request_gone, stop_generations
from vlm_demo.ui.sidebar import DEFAULT_VALUES, EXAMPLES, Controls, SidebarValues, sidebar_handler
from vlm_demo.ui.status import plural, status_html

Messages = list[dict[str, Any]]
GENERATION = {"concurrency_id": "generate", "concurrency_limit": 2}
MAX_BATCH = 8  # images in one /caption_batch call


def split_history(history: Messages | None) -> tuple[list[tuple[str, str]], list[str], list[int]]:
    """Chatbot messages -> finished (user, assistant) turns, every image path in order, and images per turn.
    Consecutive user messages (text and files sent apart) make one turn."""
    pairs: list[tuple[str, str]] = []
    images: list[str] = []
    counts: list[int] = []
    user: str | None = None
    for message in history or []:
        content = message.get("content")
        if message.get("role") == "user":
            if user is None:
                user = ""
                counts.append(0)
            user += message_text(content)
            files = message_files(content)
            images += files
            counts[-1] += len(files)
        elif message.get("role") == "assistant" and user is not None:
            pairs.append((user, message_text(content)))
            user = None
    if user is not None:  # an unanswered user turn at the end is not part of the conversation
        images = images[:len(images) - counts.pop()]
    return pairs, images, counts


def user_turn(history: Messages, index: int) -> tuple[int, int]:
    """[start, end) of the run of user messages that contains message `index`."""
    start, end = index, index + 1
    while start > 0 and history[start - 1].get("role") == "user":
        start -= 1
    while end < len(history) and history[end].get("role") == "user":
        end += 1
    return start, end


def _too_many(allowed: int, tokens: int) -> gr.Error:
    if allowed == 1:
        return gr.Error(f"This combination takes one image per conversation (each is {plural(tokens, 'image token')}"
                        f"; a conversation holds at most {IMAGE_TOKEN_BUDGET}). Clear the chat to ask about another "
                        "image.", title="One image only")
    return gr.Error(f"This combination takes at most {allowed} images in one conversation. Clear the chat to start "
                    "a new one.", title="Too many images")


def _answer(before: Messages, question: str, new_images: list[str], sidebar: SidebarValues,
            progress: Any) -> Iterator[tuple[Messages, str]]:
    """Stream the transcript `before` + the user turn (its new images and `question`) + the growing answer."""
    question = (question or "").strip() or DEFAULT_PROMPT
    turns, images, counts = split_history(before)
    check_prompt(question, turns)
    images, counts = images + new_images, counts + [len(new_images)]
    if not images:
        raise gr.Error("Upload an image or pick an example first.", title="No image")
    from vlm_demo.ui.common import session_precision  # the visitor's LLM weights (sidebar switch)

    combo, settings, vlm = sidebar.pick(progress, session_precision())
    if len(images) > vlm.max_images:
        raise _too_many(vlm.max_images, vlm.adapter.num_output_tokens)
    check_prompt(question, turns, vlm, counts)
    pictures = [load_image(path) for path in images]
    status = status_html(combo, vlm)
    user = [{"role": "user", "content": [{"path": path} for path in new_images] + [question]}]
    shown = list(before) + user + [{"role": "assistant", "content": ""}]
    yield shown, status
    answer = ""
    for piece in vlm.chat(pictures, question, turns, settings, cancelled=request_gone(), images_per_turn=counts):
        answer += piece
        shown[-1]["content"] = answer
        yield shown, status
    shown[-1]["content"] = answer.strip() or "(the model gave an empty answer)"
    yield shown, status


def _first_image(image: Any, history: Messages | None) -> list[str]:
    """The picked image starts a conversation: it is attached to the first message unless one came with it."""
    _, images, _ = split_history(history)
    return [] if images or image is None else [stored_upload(image)]


@user_errors
@gpu
@sidebar_handler()
def respond(image: Any, message: dict | str | None, history: Messages, sidebar: SidebarValues,
            progress: gr.Progress = gr.Progress()) -> Iterator[tuple[Messages, Any, str]]:  # noqa: B008
    """Stream the answer to a message (text and any attached images) about the images of the conversation."""
    text = message_text(message.get("text") if isinstance(message, dict) else message)
    attached = message.get("files") or [] if isinstance(message, dict) else []
    if not isinstance(attached, list) or len(attached) + len(split_history(history)[1]) > MAX_IMAGES:
        raise _too_many(MAX_IMAGES, 0)  # counted before any is read
    files = [stored_upload(path) for path in attached]
    for path in files:
        load_image(path)  # a bad attachment is refused before it enters the transcript
    new = files or _first_image(image, history)
    shown: Messages = []
    status = ""
    for index, (shown, status) in enumerate(_answer(history or [], text, new, sidebar, progress)):
        yield shown, None if index == 0 else gr.skip(), status  # the message box is emptied once
    yield shown, None, status


@user_errors
@gpu
@sidebar_handler()
def describe(image: Any, history: Messages, sidebar: SidebarValues,
             progress: gr.Progress = gr.Progress()) -> Iterator[tuple[Messages, str]]:  # noqa: B008
    """Ask for a description of the image (a caption) in the conversation."""
    yield from _answer(history or [], DEFAULT_PROMPT, _first_image(image, history), sidebar, progress)


def _last_user(history: Messages) -> int:
    last = max((i for i, m in enumerate(history) if m.get("role") == "user"), default=None)
    if last is None:
        raise gr.Error("There is nothing to regenerate yet: send a message first.", title="Nothing to regenerate")
    return last


@user_errors
@gpu
@sidebar_handler()
def regenerate(history: Messages, sidebar: SidebarValues,
               progress: gr.Progress = gr.Progress()) -> Iterator[tuple[Messages, str]]:  # noqa: B008
    """Answer the last user message again (change the seed or temperature for a different answer)."""
    history = list(history or [])
    _, turn = _turn_again(history, _last_user(history))
    yield from _answer(history[:turn["start"]], turn["text"], turn["files"], sidebar, progress)


def _turn_again(history: Messages, index: int, text: str | None = None) -> tuple[Messages, dict]:
    """The transcript up to the user turn holding message `index` (with `text` in place of its own), and that turn
    to answer again as {start, text, files}."""
    start, end = user_turn(history, index)
    turn = history[start:end]
    files = [path for m in turn for path in message_files(m.get("content"))]
    text = text if text is not None else "".join(message_text(m.get("content")) for m in turn)
    shown = history[:start] + [{"role": "user", "content": [{"path": path} for path in files] + [text]}]
    return shown, {"start": start, "text": text, "files": files}


def retry(history: Messages, event: gr.RetryData) -> tuple[Any, ...]:
    """The Chatbot's retry button: that user turn is answered again (the answer after it is dropped)."""
    return (*_turn_again(list(history or []), _index(event)), *_busy())


def edit(history: Messages, event: gr.EditData) -> tuple[Any, ...]:
    """An edited user message: the conversation after it is dropped and the new text is answered (same images)."""
    text = message_text(event.value).strip()
    if not text:
        raise gr.Error("An edited message needs some text.", title="Empty message")
    return (*_turn_again(list(history or []), _index(event), text), *_busy())


@user_errors
@gpu
@sidebar_handler()
def answer_again(history: Messages, again: dict, sidebar: SidebarValues,
                 progress: gr.Progress = gr.Progress()) -> Iterator[tuple[Messages, str]]:  # noqa: B008
    """Answer the turn `retry` or `edit` picked."""
    before = list(history or [])[:again["start"]]
    yield from _answer(before, again["text"], again["files"], sidebar, progress)


def undo(history: Messages, event: gr.UndoData) -> tuple[Messages, dict]:
    """The Chatbot's undo button: the turn leaves the transcript and its text and images go back to the message box."""
    history = list(history or [])
    _, turn = _turn_again(history, _index(event))
    return history[:turn["start"]], {"text": turn["text"], "files": turn["files"]}


def _index(event: gr.EventData) -> int:
    index = getattr(event, "index", 0)
    return int(index[0] if isinstance(index, (list, tuple)) else index)


@gpu
@sidebar_handler()
def caption(image: FileData, prompt: str = DEFAULT_PROMPT, sidebar: SidebarValues = DEFAULT_VALUES) -> dict:
    """Caption one image: returns caption, combination, adapter_trained and seconds."""
    return _captions([image], prompt, sidebar)["captions"][0]


@gpu
@sidebar_handler()
def caption_batch(images: list[FileData], prompt: str = DEFAULT_PROMPT,
                  sidebar: SidebarValues = DEFAULT_VALUES) -> dict:
    """Caption up to eight images in one batch: returns captions (one dict per image, in order) and seconds."""
    return _captions(images, prompt, sidebar)


def _captions(images: list[FileData], prompt: str, sidebar: SidebarValues) -> dict:
    start = time.perf_counter()
    images = list(images or [])
    if not images:
        raise gr.Error("Send at least one image.", title="No image")
    if len(images) > MAX_BATCH:
        raise gr.Error(f"{len(images)} images are more than one call takes ({MAX_BATCH}).", title="Too many images")
    check_prompt((prompt or "").strip())
    pictures = [load_image(image) for image in images]
    combo, options, vlm = sidebar.pick()
    texts = vlm.caption(pictures, (prompt or "").strip() or DEFAULT_PROMPT, options, cancelled=request_gone())
    seconds = round(time.perf_counter() - start, 3)
    captions = [{"caption": text, "combination": combo.name, "encoder": combo.encoder, "adapter": combo.adapter,
                 "llm": combo.llm, "adapter_trained": combo.trained, "seconds": seconds} for text in texts]
    return {"captions": captions, "seconds": seconds}


def build(controls: Controls) -> None:
    """Render the Chat tab's body and wire it to the shared controls."""
    chatbot = gr.Chatbot(height=470, label="Conversation", elem_id="vd-chatbot", buttons=["copy", "copy_all"],
                         feedback_options=None, editable="user",
                         placeholder="<h3>Ask about the image</h3>Pick an example or upload a photo on the left, then "
                                     "press <b>Describe</b> or type a question. Attach more images to a message with "
                                     "the paper clip where the combination takes several.")
    message = gr.MultimodalTextbox(placeholder="Ask something about the image\u2026", show_label=False,
                                   file_types=["image"], file_count="multiple", sources=["upload"], max_lines=4,
                                   elem_id="vd-message", submit_btn="Send")
    with gr.Row():
        describe_button = gr.Button("Describe the image", variant="secondary", elem_id="vd-describe")
        stop_button = gr.Button("\u25a0 Stop", variant="stop", visible=False, elem_id="vd-stop")
    examples = [[{"text": question, "files": [str(EXAMPLES / name)]}] for name, question in EXAMPLE_QUESTIONS
                if (EXAMPLES / name).is_file()]
    if examples:
        gr.Examples(examples, [message], [chatbot], example_answer, cache_examples=True, cache_mode="lazy",
                    label="Example questions \u2014 answered by the default combination, kept after the first click",
                    elem_id="vd-chat-examples", api_visibility="private")
    regenerate_api = gr.Button(visible=False)  # /regenerate for API clients; the page retries through the Chatbot

    again = gr.State()
    answering = {**GENERATION, "show_progress_on": [chatbot]}
    shared = controls.values
    outputs = [chatbot, controls.status]
    quiet = {"api_visibility": "private", "queue": False}
    history_events = {"api_visibility": "private", "concurrency_id": "history", "concurrency_limit": 2}
    busy = [message, describe_button, stop_button]  # one answer at a time per page; Stop while it runs
    generating = [
        message.submit(_busy, None, busy, **quiet).then(
            respond, [controls.image, message, chatbot, *shared], [chatbot, message, controls.status],
            api_name="chat", **answering),
        describe_button.click(_busy, None, busy, **quiet).then(
            describe, [controls.image, chatbot, *shared], outputs, api_name="describe", **answering),
        chatbot.retry(retry, chatbot, [chatbot, again, *busy], **history_events).then(
            answer_again, [chatbot, again, *shared], outputs, api_visibility="private", **answering),
        chatbot.edit(edit, chatbot, [chatbot, again, *busy], **history_events).success(
            answer_again, [chatbot, again, *shared], outputs, api_visibility="private", **answering),
    ]
    for event in generating:
        event.then(_idle, None, busy, **quiet)
    stop_button.click(stop, None, busy, cancels=generating, **quiet)
    chatbot.clear(lambda: None, None, message, **quiet)
    regenerate_api.click(regenerate, [chatbot, *shared], outputs, api_name="regenerate", **GENERATION)
    chatbot.undo(undo, chatbot, [chatbot, message], **history_events)
    controls.image.change(lambda: [], None, [chatbot], **quiet)  # a new picked image starts a new conversation
    gr.api(user_errors(caption), api_name="caption", **GENERATION)
    gr.api(user_errors(caption_batch), api_name="caption_batch", **GENERATION)


EXAMPLE_QUESTIONS = [("chelsea.jpg", "What animal is this?"), ("coffee.jpg", "What is in the cup?"),
                     ("shapes-test-7-orange-circle.png", "What colour is the shape?")]


@user_errors
@gpu
def example_answer(message: dict) -> Messages:
    """An example question about its attached image, answered by the default combination (cached by Gradio)."""
    steps = _answer([], message.get("text") or "", list(message.get("files") or []), DEFAULT_VALUES, None)
    return list(steps)[-1][0]


def _busy() -> tuple[Any, Any, Any]:
    return gr.update(interactive=False), gr.update(interactive=False), gr.update(visible=True)


def stop(request: gr.Request) -> tuple[Any, Any, Any]:
    """The Stop button: this page's generation ends now; the partial answer stays in the transcript."""
    stop_generations(request)
    return _idle()


def _idle() -> tuple[Any, Any, Any]:
    return gr.update(interactive=True), gr.update(interactive=True), gr.update(visible=False)
