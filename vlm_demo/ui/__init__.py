"""The Gradio app: `build_app()` assembles the header, the shared controls and the four tabs; `launch` serves it."""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import tempfile

from vlm_demo.environment import set_defaults

set_defaults()  # before gradio is imported, below


def _private_temp_dir() -> None:
    """Gradio's upload cache in a folder of this process's own, removed at exit (the default /tmp/gradio is shared
    by every app on the machine and never emptied); a GRADIO_TEMP_DIR set by the user is kept."""
    if not os.environ.get("GRADIO_TEMP_DIR"):
        folder = tempfile.mkdtemp(prefix="vlm_demo-gradio-")
        os.environ["GRADIO_TEMP_DIR"] = folder
        atexit.register(shutil.rmtree, folder, True)


def exit_cleanly_on_signals() -> None:
    """SIGTERM (how a Space is stopped) and SIGINT end the process through a normal exit, so the exit handlers run
    and the private upload folder is removed (a signal's default action skips them). Call from the main thread."""
    def leave(number: int, _frame: object) -> None:
        raise SystemExit(128 + number)

    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, leave)


_private_temp_dir()

import gradio as gr  # noqa: E402 - the environment above must be set before gradio is imported

from vlm_demo.images import MAX_FILE_BYTES  # noqa: E402
from vlm_demo.ui import gate  # noqa: E402
from vlm_demo.ui.theme import CSS, HEADER, THEME  # noqa: E402

QUEUE_SIZE = 64
DELETE_CACHE = (1800, 3600)  # every half hour, Gradio deletes this app's cached files older than an hour


def build_app() -> gr.Blocks:
    """The whole app; serve it with `launch(app)` (theme and CSS are launch options in Gradio 6)."""
    from vlm_demo.ui import alignment, cards, chat, compare, sidebar

    with gr.Blocks(title="Vision-Language Adapter Lab", fill_width=True, delete_cache=DELETE_CACHE) as app:
        gr.HTML(HEADER, elem_id="vd-header")
        with gr.Row(equal_height=False):
            with gr.Column(scale=4, min_width=320, elem_id="vd-sidebar"):
                controls = sidebar.build()
            with gr.Column(scale=8, min_width=480, elem_id="vd-main"):
                with gr.Tabs(elem_id="vd-tabs"):
                    with gr.Tab("Chat", id="chat", elem_id="vd-tab-chat"):
                        chat.build(controls)
                    with gr.Tab("Compare", id="compare", elem_id="vd-tab-compare"):
                        compare.build(controls)
                    with gr.Tab("Alignment", id="alignment", elem_id="vd-tab-alignment"):
                        alignment.build(controls)
                    with gr.Tab("Models", id="models", elem_id="vd-tab-models"):
                        cards.build(controls)
    app.queue(default_concurrency_limit=2, max_size=QUEUE_SIZE, api_open=False)
    gate.guard(app)
    return app


def launch(app: gr.Blocks | None = None, host: str | None = None, port: int | None = None,
           **options: object) -> tuple:
    """Serve the app with the project's theme, CSS, upload limit and error display."""
    app = app or build_app()
    return app.launch(server_name=host, server_port=port, theme=THEME, css=CSS, max_file_size=MAX_FILE_BYTES,
                      footer_links=["api", "gradio"], app_kwargs=gate.app_options(), **options)
