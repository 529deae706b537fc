"""What a request may carry: files only from this app's upload folder, images as file payloads, conversations of text
and uploaded images checked as sent, no URLs to fetch."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr

from vlm_demo.images import MAX_FILE_BYTES
from vlm_demo.pipeline import MAX_IMAGES, MAX_TURNS

NOT_AN_UPLOAD = "Only images uploaded to this app are accepted: upload the image file itself."
NOT_A_FILE = "Send the image as an uploaded file."
MAX_JSON_BODY = MAX_FILE_BYTES * 4 // 3 + 2**20  # an image sent inline as a data URL, base64


def upload_folder() -> Path:
    """Where Gradio's upload route stores files (GRADIO_TEMP_DIR, which vlm_demo.ui makes private to the process)."""
    return Path(gr.utils.get_upload_folder()).resolve()


def uploaded_file(value: Any) -> str:
    """The path of a file Gradio's upload route stored, or gr.Error: anything else on the server gets one message,
    whatever is at the path (no file oracle)."""
    path = getattr(value, "path", value.get("path") if isinstance(value, dict) else value)
    if not isinstance(path, str) or not path:
        raise gr.Error(NOT_A_FILE, title="Bad image")
    try:
        resolved = Path(path).resolve(strict=True)
        regular = resolved.is_file()
    except (OSError, RuntimeError, ValueError):
        regular = False
    if not regular or not resolved.is_relative_to(upload_folder()):
        raise gr.Error(NOT_AN_UPLOAD, title="Not an upload")
    return str(resolved)


def raw_upload(payload: Any) -> str | bytes | None:
    """gr.Image's preprocess: an upload's path, or an inline data URL's bytes, for `open_image` to judge (Gradio's
    own preprocess would open any file with PIL first, outside every check)."""
    import base64

    if payload is None:
        return None
    url = getattr(payload, "url", None) or ""
    if url.startswith("data:"):
        if len(url) > MAX_JSON_BODY:
            raise gr.Error(f"The image is over the {MAX_FILE_BYTES // 2**20} MB limit.", title="Bad image")
        return base64.b64decode(url.split(",", 1)[1] if "," in url else "", validate=False)
    return uploaded_file(payload)


def check_history(history: Any) -> None:
    """Refuse a conversation, as sent, before Gradio builds anything from it: anything but a list of user and
    assistant messages made of text parts and uploaded image files (a "component" part would make Gradio construct
    and preprocess any component it names), more turns than a conversation holds, or more images. An upload's file
    part gets Gradio's FileData marker, which Gradio's own model requires."""
    if not isinstance(history, list):
        raise _bad_conversation("Send the conversation as a list of messages.")
    if len(history) > 2 * (MAX_TURNS + 1) + MAX_IMAGES:
        raise _bad_conversation(f"The conversation has {len(history):,} messages; it can hold {MAX_TURNS} turns. "
                                "Clear it to start a new one.", "Too long")
    files = 0
    for message in history:
        message = message if isinstance(message, dict) else {}
        parts = message.get("content")
        if message.get("role") not in ("user", "assistant") or not isinstance(parts, list) \
                or len(parts) > MAX_IMAGES + 4:
            raise _bad_conversation("A conversation holds user and assistant messages of a few parts each.")
        for part in parts:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "file" and isinstance(part.get("file"), dict):
                part["file"]["path"] = uploaded_file(part["file"])
                part["file"]["meta"] = {"_type": "gradio.FileData"}
                files += 1
            elif kind != "text" or not isinstance(part.get("text"), str):
                raise _bad_conversation("Conversation messages hold only text and uploaded images.")
    if files > MAX_IMAGES:
        raise _bad_conversation(f"A conversation holds at most {MAX_IMAGES} images. Clear it to start a new one.",
                                "Too many images")


def _bad_conversation(text: str, title: str = "Bad conversation") -> gr.Error:
    return gr.Error(text, title=title)


def guard_inputs(app: gr.Blocks) -> None:
    """Every gr.Image input takes uploads only (`raw_upload`), and file inputs never fetch a URL (Gradio would
    download it with no size cap)."""
    for fn in app.fns.values():
        for block in fn.inputs:
            if isinstance(block, gr.Image):
                block.preprocess = raw_upload  # type: ignore[method-assign] - a subclass would write a .pyi stub
            fetch = getattr(block, "async_move_resource_to_block_cache", None)
            if fetch is not None and not getattr(fetch, "refuses_urls", False):
                block.async_move_resource_to_block_cache = _uploads_only(fetch)


def check_shapes(app: gr.Blocks) -> None:
    """Conversations pass `check_history`, and an image or a message of the wrong shape gets our message, before
    Gradio validates, copies or builds anything (its own validation answers a malformed value with a generic
    error)."""
    validate = app.validate_inputs

    def validate_inputs(block_fn: Any, inputs: list[Any]) -> None:
        validate(block_fn, inputs)
        for block, value in zip(block_fn.inputs, inputs):
            if isinstance(block, gr.Image) and value is not None and not isinstance(value, dict):
                raise gr.Error(NOT_A_FILE, title="Bad image")
            if isinstance(block, gr.Chatbot) and value is not None:
                check_history(value)
            if isinstance(block, gr.MultimodalTextbox) and value is not None and not (
                    isinstance(value, dict) and isinstance(value.get("files", []), list)):
                raise gr.Error('Send a message as {"text": ..., "files": [uploaded images]}.', title="Bad message")

    app.validate_inputs = validate_inputs  # type: ignore[method-assign]


def _uploads_only(fetch: Callable) -> Callable:
    async def uploads_only(path: str | None) -> str | None:
        if isinstance(path, str) and path.lower().startswith(("http://", "https://")):
            raise gr.Error("Files are accepted as uploads only, not as URLs: upload the file itself.",
                           title="URL not accepted")
        return await fetch(path)

    uploads_only.refuses_urls = True  # type: ignore[attr-defined]
    return uploads_only
