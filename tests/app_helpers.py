"""Helpers shared by the app tests: a free loopback port and the app served in-process."""

from __future__ import annotations

import importlib.util
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "assets" / "examples"
PHOTO = EXAMPLES / "chelsea.jpg"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serve_app(app=None) -> Iterator[str]:
    """The real app (or `app`, built by the caller) on a free loopback port in this process; yields its URL and
    closes it afterwards."""
    from vlm_demo.ui import build_app, launch

    app = app or build_app()
    port = free_port()
    launch(app, host="127.0.0.1", port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        app.close()


def shipped_image_tokens(combo: str) -> int:
    """How many image tokens the combination's shipped adapter puts into the prompt (from its config.json)."""
    import json

    from vlm_demo.combos import COMBOS
    from vlm_demo.leaderboard import image_tokens

    return image_tokens(json.loads((Path(COMBOS[combo].checkpoint_path) / "config.json").read_text()))


def load_app_module():
    """app.py as a fresh module (it sets environment defaults when imported)."""
    spec = importlib.util.spec_from_file_location("vlm_demo_app", ROOT / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
