"""ASGI middleware in front of Gradio's routes: bounded request bodies, uploads only of images within the upload
folder's budget, and a note of every result stream opened (for `traffic.unread`)."""

from __future__ import annotations

import json
import os
import threading
import warnings
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from vlm_demo.images import FORMATS, MAX_FILE_BYTES, READABLE
from vlm_demo.ui.gate.inputs import MAX_JSON_BODY, upload_folder
from vlm_demo.ui.gate.traffic import listening

MAX_FILES_PER_UPLOAD = 8  # /caption_batch takes 8 images
MAX_UPLOAD_BODY = MAX_FILES_PER_UPLOAD * MAX_FILE_BYTES + 2**20
UPLOAD_BUDGET = int(os.environ.get("VLM_DEMO_UPLOAD_BUDGET_MB", "1024")) * 2**20  # the upload folder, at most
API = "/gradio_api"


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
            listening(path.rstrip("/").rsplit("/", 1)[-1])
        elif path.rstrip("/").endswith(f"{API}/queue/data"):
            from urllib.parse import parse_qs

            for session in parse_qs(query).get("session_hash", []):
                listening(session)

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
