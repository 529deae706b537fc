"""What one visitor can ask of the shared app: queued upload checks, message and history caps, temp files, URLs."""

from __future__ import annotations

import sys

import gradio as gr
import pytest


@pytest.fixture(scope="module")
def app():
    from vlm_demo.ui import build_app

    return build_app()


def _event(app, name: str):
    return next(block for block in app.fns.values() if getattr(block.fn, "__name__", "") == name)


def test_upload_checks_are_queued_with_a_limit(app):
    check = _event(app, "check_upload")
    assert check.queue is not False and check.concurrency_limit == 2


def test_a_long_message_or_conversation_is_refused_before_any_work(monkeypatch):
    from vlm_demo.pipeline import MAX_CONVERSATION_CHARS, MAX_MESSAGE_CHARS
    from vlm_demo.ui import chat, sidebar

    monkeypatch.setattr(sidebar, "load_vlm", lambda *_: pytest.fail("a model was loaded for a refused message"))
    settings = (8, 0.0, 0.9, 0)
    with pytest.raises(gr.Error, match=f"message is {MAX_MESSAGE_CHARS + 1:,} characters long") as caught:
        list(chat.respond(None, "a" * (MAX_MESSAGE_CHARS + 1), [], "e", "mlp", "llm", *settings))
    assert caught.value.title == "Too long"
    turn = "b" * 1_000
    history = [{"role": role, "content": turn} for _ in range(MAX_CONVERSATION_CHARS // 2_000 + 1)
               for role in ("user", "assistant")]
    with pytest.raises(gr.Error, match="conversation is .* characters long.*clear it"):
        list(chat.respond(None, "and now?", history, "e", "mlp", "llm", *settings))
    with pytest.raises(gr.Error, match="message is"):
        chat.caption(None, "c" * (MAX_MESSAGE_CHARS + 1))


def test_the_pipeline_refuses_a_long_prompt_whoever_calls_it(tiny_llm):
    from vlm_demo.adapters import build_adapter
    from vlm_demo.pipeline import MAX_MESSAGE_CHARS, PromptTooLong, VisionLanguageModel

    encoder = type("Encoder", (), {"name": "e", "embed_dim": 8})()
    adapter = build_adapter("linear", encoder="e", token_dim=8, llm="tiny-llama", llm_hidden=32)
    vlm = VisionLanguageModel(encoder, adapter, tiny_llm, trained=False)
    with pytest.raises(PromptTooLong, match="limit is 2,000"):
        vlm.caption([None], "x" * (MAX_MESSAGE_CHARS + 1))
    with pytest.raises(PromptTooLong):
        next(vlm.chat(None, "y" * (MAX_MESSAGE_CHARS + 1)))


def test_the_compare_prompt_box_carries_the_cap_to_the_browser(app):
    # Chat's MultimodalTextbox has no max_length; its messages are capped on the server (check_prompt, above)
    from vlm_demo.pipeline import MAX_MESSAGE_CHARS

    boxes = {block.elem_id: block for block in app.blocks.values() if getattr(block, "elem_id", None)}
    assert boxes["vd-compare-prompt"].max_length == MAX_MESSAGE_CHARS


def test_the_app_keeps_gradio_files_in_a_folder_of_its_own_removed_at_exit(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    env = {key: value for key, value in os.environ.items() if key != "GRADIO_TEMP_DIR"}
    code = ("import os, vlm_demo.ui, gradio.route_utils as routes, pathlib\n"
            "folder = os.environ['GRADIO_TEMP_DIR']\npathlib.Path(folder, 'upload.png').write_bytes(b'x')\n"
            "print(folder, routes.DEFAULT_TEMP_DIR, oct(os.stat(folder).st_mode & 0o777))\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    folder, uploads, mode = result.stdout.split()
    assert folder == uploads and "vlm_demo-gradio-" in folder and mode == "0o700"
    assert not Path(folder).exists()


@pytest.mark.parametrize("name", ["SIGTERM", "SIGINT"])
def test_the_upload_folder_is_removed_when_the_app_is_stopped_by_a_signal(tmp_path, name):
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from app_helpers import ROOT, free_port

    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if k != "GRADIO_TEMP_DIR"}, "TMPDIR": str(tmp_path),
           "VLM_DEMO_PRELOAD": "0", "GRADIO_SERVER_PORT": str(port)}
    app = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and app.poll() is None:
            try:
                import socket

                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        folders = list(Path(tmp_path).glob("vlm_demo-gradio-*"))
        assert len(folders) == 1, folders
        app.send_signal(getattr(signal, name))
        app.wait(timeout=60)
    finally:
        app.kill()
    assert not folders[0].exists(), app.stderr.read()[-2000:]


def test_the_app_deletes_old_cached_files(app):
    from vlm_demo.ui import DELETE_CACHE

    assert app.delete_cache == DELETE_CACHE


def test_url_inputs_are_refused_without_being_fetched(app):
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from gradio_client import Client
    from gradio_client.exceptions import AppError

    from vlm_demo.ui import launch

    hits: list[str] = []

    class Counter(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"\0" * 1024)

        def log_message(self, *_):
            pass

    server = HTTPServer(("127.0.0.1", 0), Counter)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/huge.png"
    from app_helpers import free_port

    port = free_port()
    launch(app, host="127.0.0.1", port=port, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        image = {"path": url, "url": url, "meta": {"_type": "gradio.FileData"}}
        with pytest.raises(AppError, match="uploads only, not as URLs"):
            client.predict(image=image, max_new_tokens=2, api_name="/caption")
    finally:
        app.close()
        server.shutdown()
    assert hits == []


def test_an_inline_data_url_over_the_upload_limit_is_refused_before_decoding():
    from gradio.data_classes import FileData

    from vlm_demo.images import MAX_FILE_BYTES
    from vlm_demo.ui.gate.inputs import MAX_JSON_BODY, raw_upload

    huge = FileData(path="x.png", url="data:image/png;base64," + "A" * (MAX_JSON_BODY + 1))
    with pytest.raises(gr.Error, match=f"over the {MAX_FILE_BYTES // 2**20} MB limit"):
        raw_upload(huge)


def test_memory_a_request_freed_is_returned_to_the_system_when_it_ends(monkeypatch):
    from vlm_demo.ui import common

    trims: list[str] = []
    monkeypatch.setattr(common, "return_freed_memory", lambda: trims.append("trim"))

    @common.user_errors
    def answer(fail: bool) -> str:
        if fail:
            raise RuntimeError("boom")
        return "ok"

    @common.user_errors
    def stream():
        yield "a"
        yield "b"

    assert answer(False) == "ok" and trims == ["trim"]
    with pytest.raises(gr.Error):
        answer(True)
    assert list(stream()) == ["a", "b"] and trims == ["trim"] * 3
    if sys.platform.startswith("linux"):
        assert hasattr(common._libc(), "malloc_trim")  # glibc: the real call is available here
