"""An anonymous visitor's attacks on the public API (issue 27), each one request or a short burst that the app must
refuse cheaply; `bench/soak.py` measures each alone and mixes them into valid traffic. Raw HTTP, as an attacker
would send it (gradio_client would upload files it is handed)."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
PHOTO = ROOT / "assets" / "examples" / "chelsea.jpg"
DEFAULT = ["efficientnet-lite0", "mlp", "smollm2-135m-instruct"]
SETTINGS = [8, 0.0, 0.9, 0]
MARK = {"_type": "gradio.FileData"}
ATTACKS: dict[str, Callable[[Attacker], None]] = {}


def tiff_bytes(size: tuple[int, int], data: bytes, tile: int | None = None, rows_per_strip: int | None = None,
               compression: int = 1) -> bytes:
    """A little-endian 8-bit RGB TIFF holding `data` as one tile (tile x tile) or one strip."""
    width, height = size
    layout = [(322, 4, tile), (323, 4, tile), (324, 4, 14), (325, 4, len(data))] if tile else \
        [(273, 4, 14), (278, 4, rows_per_strip or height), (279, 4, len(data))]
    tags = sorted([(256, 4, width), (257, 4, height), (258, 3, 8), (259, 3, compression), (262, 3, 2),
                   (277, 3, 3), *layout])
    ifd = struct.pack("<H", len(tags)) + b"".join(
        struct.pack("<HHI", code, kind, 1) + struct.pack("<HH" if kind == 3 else "<I", value, *[0] * (kind == 3))
        for code, kind, value in tags) + b"\0\0\0\0"
    return b"II*\0" + struct.pack("<I", 14 + len(data)) + b"\0" * 6 + data + ifd


def deflated_zeros(chunk: int, repeats: int) -> bytes:
    """zlib data for chunk * repeats zero bytes, built from one compressed chunk in milliseconds."""
    compressor = zlib.compressobj(9)
    block = compressor.compress(bytes(chunk)) + compressor.flush(zlib.Z_FULL_FLUSH)  # byte-aligned, no back-refs
    total = chunk * repeats
    return block[:2] + block[2:] * repeats + b"\x03\x00" + struct.pack(">I", (total % 65521) << 16 | 1)


def thin_png(width: int = 10_000) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (width, 1)).save(buffer, format="PNG")
    return buffer.getvalue()


class Refused(AssertionError):
    """An attack got an answer it should not have, or a refusal that does not say why."""


class Attacker:
    """One anonymous client (its own address behind the trusted proxy) sending raw HTTP."""

    def __init__(self, url: str, address: str) -> None:
        self.http = httpx.Client(base_url=url.rstrip("/"), timeout=180, headers={"X-Forwarded-For": address})

    def post(self, api_name: str, data: list) -> httpx.Response:
        return self.http.post(f"/gradio_api/call/{api_name}", json={"data": data})

    def call(self, api_name: str, data: list) -> str:
        posted = self.post(api_name, data)
        if posted.status_code != 200:
            return f"event: error\ndata: {posted.text}"
        return self.http.get(f"/gradio_api/call/{api_name}/{posted.json()['event_id']}").text

    def refused(self, api_name: str, data: list, words: str) -> None:
        answer = self.call(api_name, data)
        if "event: error" not in answer or words not in answer:
            raise Refused(f"{api_name}: {answer[:200]!r} (wanted a refusal saying {words!r})")

    def upload(self, name: str, data: bytes) -> dict:
        response = self.http.post("/gradio_api/upload", files={"files": (name, data)})
        response.raise_for_status()
        return {"path": response.json()[0], "meta": MARK}

    def upload_status(self, files: list[tuple[str, bytes]]) -> int:
        return self.http.post("/gradio_api/upload", files=[("files", file) for file in files]).status_code


def attack(function: Callable[[Attacker], None]) -> Callable[[Attacker], None]:
    ATTACKS[function.__name__] = function
    return function


def _history(parts: list[dict], turns: int = 1) -> list[dict]:
    return [{"role": role, "content": parts if role == "user" else [{"type": "text", "text": "ok"}]}
            for _ in range(turns) for role in ("user", "assistant")]


def _chat(history: list[dict], text: str = "and?", files: list | None = None) -> list:
    return [None, {"text": text, "files": files or []}, history, *DEFAULT, *SETTINGS]


@attack
def server_file(visitor: Attacker) -> None:
    visitor.refused("caption", [{"path": str(PHOTO)}, "", *DEFAULT, *SETTINGS], "Only images uploaded to this app")
    visitor.refused("describe", [{"path": "/etc/passwd"}, [], *DEFAULT, *SETTINGS], "Only images uploaded to this app")


@attack
def thin_image(visitor: Attacker) -> None:
    visitor.refused("caption", [visitor.upload("thin.png", thin_png()), "", *DEFAULT, *SETTINGS], "long and thin")


@attack
def tile_bomb(visitor: Attacker) -> None:
    bomb = tiff_bytes((16, 16), deflated_zeros(26752 * 3 * 256, 104), tile=26752, compression=8)
    visitor.refused("caption", [visitor.upload("tile.tif", bomb), "", *DEFAULT, *SETTINGS], "TIFF tile")


@attack
def smuggled_component(visitor: Attacker) -> None:
    for component, value in (("image", {"path": str(PHOTO)}), ("file", [{"path": str(ROOT / "README.md")}])):
        part = {"type": "component", "component": component, "value": value, "constructor_args": {}, "props": {}}
        visitor.refused("chat", _chat(_history([part])), "only text and uploaded images")


@attack
def empty_turns(visitor: Attacker) -> None:
    visitor.refused("chat", _chat(_history([{"type": "text", "text": ""}], 800)), "1,600 messages")


@attack
def token_heavy_turns(visitor: Attacker) -> None:
    heavy = "\u9f98\U0001f600" * 330  # 660 characters that cost several tokens each
    history = _history([{"type": "text", "text": heavy}], 6)
    history[0]["content"] = [{"type": "file", "file": visitor.upload("chelsea.jpg", PHOTO.read_bytes())}]
    visitor.refused("chat", _chat(history), "tokens long")


@attack
def attachment_flood(visitor: Attacker) -> None:
    photo = visitor.upload("chelsea.jpg", PHOTO.read_bytes())
    visitor.refused("chat", _chat([], files=[photo] * 40), "at most 4 images")


@attack
def junk_uploads(visitor: Attacker) -> None:
    statuses = (visitor.upload_status([("notes.png", b"not an image")]),
                visitor.upload_status([(f"{n}.jpg", PHOTO.read_bytes()) for n in range(9)]))
    if statuses != (415, 413):
        raise Refused(f"uploads answered {statuses}, wanted (415, 413)")


@attack
def out_of_queue(visitor: Attacker) -> None:
    undo = next(d["id"] for d in visitor.http.get("/config").json()["dependencies"] if d.get("api_name") == "undo")
    direct = visitor.http.post("/gradio_api/run/predict", json={"data": [[]], "fn_index": undo, "session_hash": "a"})
    if direct.status_code != 404:
        raise Refused(f"/run/predict answered {direct.status_code}")


@attack
def raw_settings(visitor: Attacker) -> None:
    photo = visitor.upload("chelsea.jpg", PHOTO.read_bytes())
    visitor.refused("caption", [photo, "", *DEFAULT, 8, 1e-300, 0.9, 0], "emperature must be 0 (greedy)")
    visitor.refused("caption", [photo, "", *DEFAULT, 8, 0.0, 0.9, 2**70], "eed must be a whole number")


@attack
def unread_flood(visitor: Attacker) -> None:
    """Ten captions posted and never read: two places at most, and those are cancelled unread."""
    photo = visitor.upload("chelsea.jpg", PHOTO.read_bytes())
    posted = [visitor.post("caption", [photo, "Describe the image at length.", *DEFAULT, 200, 0.0, 0.9, n])
              for n in range(10)]
    if sum(response.status_code == 200 for response in posted) > 2:
        raise Refused(f"{sum(r.status_code == 200 for r in posted)} unread captions were queued")
