"""What an anonymous caller may send, enforced where Gradio hands a request to the app: files only from this app's
upload folder, chat histories of text and uploaded images, a few events per client at a time, results nobody reads
cancelled, and image-only uploads within a disk budget. Every Gradio behaviour this relies on is used in this
package and nowhere else; tests/test_app_gate.py names each one."""

from __future__ import annotations

from typing import Any

import gradio as gr

from vlm_demo.ui.gate.inputs import check_shapes, guard_inputs
from vlm_demo.ui.gate.routes import GateMiddleware
from vlm_demo.ui.gate.traffic import limit_per_client


def guard(app: gr.Blocks) -> None:
    """Apply the input checks and per-client limits to a built app, after `app.queue(...)` (which makes the queue)."""
    guard_inputs(app)
    check_shapes(app)
    limit_per_client(app)


def app_options() -> dict[str, Any]:
    """launch's `app_kwargs`: the middleware that bounds bodies and uploads and notes who reads results."""
    from starlette.middleware import Middleware

    return {"middleware": [Middleware(GateMiddleware)]}
