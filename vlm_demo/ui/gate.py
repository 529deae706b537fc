"""What an anonymous caller may send, enforced where Gradio hands a request to the app: files only from this app's
upload folder, chat histories of text and uploaded images, a few events per client at a time, results nobody reads
cancelled, and image-only uploads within a disk budget. Every Gradio behaviour this relies on is used here and
nowhere else; tests/test_app_gate.py names each one."""

from __future__ import annotations

import json
import os
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image

from vlm_demo.images import FORMATS, MAX_FILE_BYTES, READABLE
from vlm_demo.pipeline import MAX_IMAGES, MAX_TURNS

NOT_AN_UPLOAD = "Only images uploaded to this app are accepted: upload the image file itself."
PER_CLIENT = 2  # events of one concurrency group a client (IP or page session) may have waiting or running
UNREAD_GRACE_S = 10.0  # a queued result whose stream nobody opened within this long is cancelled
MAX_FILES_PER_UPLOAD = 8  # /caption_batch takes 8 images
MAX_UPLOAD_BODY = MAX_FILES_PER_UPLOAD * MAX_FILE_BYTES + 2**20
MAX_JSON_BODY = MAX_FILE_BYTES * 4 // 3 + 2**20  # an image sent inline as a data URL, base64
UPLOAD_BUDGET = int(os.environ.get("VLM_DEMO_UPLOAD_BUDGET_MB", "1024")) * 2**20  # the upload folder, at most
API = "/gradio_api"


def upload_folder() -> Path:
    """Where Gradio's upload route stores files (GRADIO_TEMP_DIR, which vlm_demo.ui makes private to the process)."""
    return Path(gr.utils.get_upload_folder()).resolve()


def uploaded_file(value: Any) -> str:
    """The path of a file Gradio's upload route stored, or gr.Error: anything else on the server gets one message,
    whatever is at the path (no file oracle)."""
    path = getattr(value, "path", value.get("path") if isinstance(value, dict) else value)
    if not isinstance(path, str) or not path:
        raise gr.Error("Send the image as an uploaded file.", title="Bad image")
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
    def refuse(text: str, title: str = "Bad conversation") -> gr.Error:
        return gr.Error(text, title=title)

    if not isinstance(history, list):
        raise refuse("Send the conversation as a list of messages.")
    if len(history) > 2 * (MAX_TURNS + 1) + MAX_IMAGES:
        raise refuse(f"The conversation has {len(history):,} messages; it can hold {MAX_TURNS} turns. Clear it to "
                     "start a new one.", "Too long")
    files = 0
    for message in history:
        parts = message.get("content") if isinstance(message, dict) else None
        if message.get("role") not in ("user", "assistant") or not isinstance(parts, list) \
                or len(parts) > MAX_IMAGES + 4:
            raise refuse("A conversation holds user and assistant messages of a few parts each.")
        for part in parts:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "file" and isinstance(part.get("file"), dict):
                part["file"]["path"] = uploaded_file(part["file"])
                part["file"]["meta"] = {"_type": "gradio.FileData"}
                files += 1
            elif kind != "text" or not isinstance(part.get("text"), str):
                raise refuse("Conversation messages hold only text and uploaded images.")
    if files > MAX_IMAGES:
        raise refuse(f"A conversation holds at most {MAX_IMAGES} images. Clear it to start a new one.",
                     "Too many images")


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
                raise gr.Error("Send the image as an uploaded file.", title="Bad image")
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


def client_ip(request: Any) -> str:
    """The caller's address: behind a proxy we trust (on a Space, or with VLM_DEMO_TRUST_PROXY=1), the last address
    it added to X-Forwarded-For; otherwise the connection's own."""
    trusted = os.environ.get("VLM_DEMO_TRUST_PROXY", "1" if os.environ.get("SPACE_ID") else "0") == "1"
    headers = getattr(request, "headers", None) or {}
    forwarded = headers.get("x-forwarded-for", "") if trusted else ""
    if forwarded.strip():
        return forwarded.split(",")[-1].strip()
    client = getattr(request, "client", None)
    return getattr(client, "host", None) or "unknown"


def limit_per_client(app: gr.Blocks) -> None:
    """Queue pushes beyond PER_CLIENT waiting or running events of one concurrency group, from one IP or one page
    session, are refused with a message; the queue's own events are counted, so nothing leaks when one ends."""
    queue = app._queue
    push = queue.push

    async def limited_push(body: Any, request: Any, username: str | None) -> tuple:
        fn = app.fns.get(body.fn_index) if body.fn_index is not None else None
        if fn is not None:
            ip, session = client_ip(request), body.session_hash
            mine = [event for event in list(queue.event_ids_to_events.values())
                    if event.concurrency_id == fn.concurrency_id
                    and (client_ip(event.request) == ip or (session and event.session_hash == session))]
            if len(mine) >= PER_CLIENT:
                return (False, f"You already have {len(mine)} requests of this kind waiting or running: wait for "
                               "one to finish.", "queue_full")
        return await push(body, request, username)

    queue.push = limited_push


_listened: OrderedDict[str, float] = OrderedDict()  # session hash or event id -> when its result stream opened
_listened_lock = threading.Lock()


def _listening(key: str) -> None:
    with _listened_lock:
        _listened[key] = time.monotonic()
        _listened.move_to_end(key)
        while len(_listened) > 50_000:
            _listened.popitem(last=False)


def unread(event: Any) -> bool:
    """True for a queued event whose result stream (the page's /queue/data or a /call/ GET) nobody opened within
    UNREAD_GRACE_S of its joining the queue; a reader who leaves later is Gradio's to notice (it marks the event
    dead)."""
    with _listened_lock:
        opened = event.session_hash in _listened or event._id in _listened
    return not opened and time.monotonic() - event.enqueue_time > UNREAD_GRACE_S


class GateMiddleware:
    """ASGI middleware: request bodies within bounds, uploads only of images within the folder budget, and a note
    of every result stream opened (for `unread`)."""

    def __init__(self, app: Callable) -> None:
        self.app = app
        self.budget = UploadBudget(upload_folder, UPLOAD_BUDGET)

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path, method = scope.get("path", ""), scope.get("method", "GET")
        if method == "GET":
            self._note_reader(path, scope.get("query_string", b"").decode("latin-1"))
            return await self.app(scope, receive, send)
        length = _content_length(scope)
        is_upload = path.rstrip("/").endswith(f"{API}/upload")
        limit = MAX_UPLOAD_BODY if is_upload else MAX_JSON_BODY
        if length is None and is_upload:
            return await _reply(send, 411, "Send uploads with a Content-Length.")
        if length is not None and length > limit:
            return await _reply(send, 413, f"The request is over the {limit // 2**20} MB limit.")
        if not is_upload:
            return await self.app(scope, _bounded(receive, limit), send)
        if not self.budget.make_room(length):
            return await _reply(send, 507, "The server's upload space is full; try again in a minute.")
        await self._checked_upload(scope, receive, send)

    @staticmethod
    def _note_reader(path: str, query: str) -> None:
        if f"{API}/call/" in path:
            _listening(path.rstrip("/").rsplit("/", 1)[-1])
        elif path.rstrip("/").endswith(f"{API}/queue/data"):
            from urllib.parse import parse_qs

            for session in parse_qs(query).get("session_hash", []):
                _listening(session)

    async def _checked_upload(self, scope: dict, receive: Callable, send: Callable) -> None:
        """Let Gradio store the files, then keep them only if each is an image this app reads."""
        start: dict = {}
        body = bytearray()

        async def hold(message: dict) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            else:
                body.extend(message.get("body", b""))

        await self.app(scope, receive, hold)
        if start.get("status") == 200:
            stored = [Path(path) for path in json.loads(bytes(body) or b"[]")]
            problem = _upload_problem(stored)
            if problem:
                for path in stored:
                    _remove_upload(path)
                return await _reply(send, problem[0], problem[1])
        await send(start)
        await send({"type": "http.response.body", "body": bytes(body)})


def _upload_problem(stored: list[Path]) -> tuple[int, str] | None:
    if len(stored) > MAX_FILES_PER_UPLOAD:
        return 413, f"Upload at most {MAX_FILES_PER_UPLOAD} files at a time."
    for path in stored:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                Image.open(path, formats=FORMATS).close()  # the header only; open_image judges the pixels
        except Image.DecompressionBombError:
            continue
        except Exception:  # noqa: BLE001 - anything Pillow cannot identify is refused the same way
            return 415, f"Only images can be uploaded here ({READABLE})."
    return None


def _remove_upload(path: Path) -> None:
    path.unlink(missing_ok=True)
    try:
        path.parent.rmdir()  # Gradio's one folder per content hash, now empty
    except OSError:
        pass


class UploadBudget:
    """Keeps the upload folder under `limit` bytes: the oldest files uploaded since start leave first (the ones
    there at start, examples Gradio copied in, stay)."""

    def __init__(self, folder: Callable[[], Path], limit: int) -> None:
        self.folder, self.limit = folder, limit
        self.kept = {path for path in self._files()}
        self.lock = threading.Lock()

    def _files(self) -> list[Path]:
        return [path for path in self.folder().rglob("*") if path.is_file()]

    def make_room(self, incoming: int) -> bool:
        with self.lock:
            files = []
            for path in self._files():
                try:
                    info = path.stat()
                except OSError:
                    continue
                files.append((info.st_mtime, info.st_size, path))
            total = sum(size for _, size, _ in files) + incoming
            for _, size, path in sorted(files):
                if total <= self.limit:
                    break
                if path not in self.kept:
                    _remove_upload(path)
                    total -= size
            return total <= self.limit


def _bounded(receive: Callable, limit: int) -> Callable:
    """`receive` that fails once a body without a Content-Length passes `limit` bytes."""
    seen = 0

    async def bounded() -> dict:
        nonlocal seen
        message = await receive()
        seen += len(message.get("body", b""))
        if seen > limit:
            raise ValueError(f"request body over {limit} bytes")
        return message

    return bounded


def _content_length(scope: dict) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _reply(send: Callable, status: int, detail: str) -> None:
    """A refusal as one line of plain text, which the page shows as it is (as Gradio's upload route does)."""
    body = detail.encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def guard(app: gr.Blocks) -> None:
    """Apply the input checks and per-client limits to a built app, after `app.queue(...)` (which makes the queue)."""
    guard_inputs(app)
    check_shapes(app)
    limit_per_client(app)


def app_options() -> dict[str, Any]:
    """launch's `app_kwargs`: the middleware that bounds bodies and uploads and notes who reads results."""
    from starlette.middleware import Middleware

    return {"middleware": [Middleware(GateMiddleware)]}
