"""A visitor who leaves mid-answer: the generation behind the stream stops within a second and frees its slot."""

from __future__ import annotations

import json

import httpx
import pytest
import torch
from app_helpers import free_port
from test_llm import _prompt
from test_llm_concurrency import _slow_llm, _wait_until

from vlm_demo.llms import GenerationSettings
from vlm_demo.ui.gate.traffic import request_gone


@pytest.fixture(scope="module")
def served():
    """A one-event Gradio app streaming a slow tiny LLM's answer (~10 s if nobody stops it) the way the chat does."""
    import gradio as gr

    llm = _slow_llm()

    def answer(text: str):
        inputs = llm.splice([_prompt(llm)], torch.zeros(1, 3, 32))
        shown = ""
        for piece in llm.stream(inputs, GenerationSettings(max_new_tokens=500), cancelled=request_gone()):
            shown += piece
            yield shown

    def caption(text: str) -> str:
        inputs = llm.splice([_prompt(llm)], torch.zeros(1, 3, 32))
        return llm.generate(inputs, GenerationSettings(max_new_tokens=500), cancelled=request_gone())[0]

    with gr.Blocks() as app:
        box, out = gr.Textbox(), gr.Textbox()
        box.submit(answer, box, out, api_name="answer", concurrency_limit=2)
        box.change(caption, box, out, api_name="caption", concurrency_limit=2)
    port = free_port()
    app.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}", llm
    app.close()


def _leave_after(url: str, fn_index: int, session: str, message: str, count: int) -> None:
    """Join the queue like a browser, read the event stream until `count` messages of kind `message`, then leave."""
    with httpx.Client(base_url=url, timeout=10) as http:
        joined = http.post("/gradio_api/queue/join", json={"data": ["hi"], "fn_index": fn_index,
                                                           "session_hash": session, "trigger_id": None,
                                                           "event_data": None})
        assert joined.status_code == 200, joined.text
        seen = 0
        with http.stream("GET", "/gradio_api/queue/data", params={"session_hash": session}) as events:
            for line in events.iter_lines():
                if line.startswith("data:") and json.loads(line[5:]).get("msg") == message:
                    seen += 1
                    if seen == count:
                        return  # the connection closes with the blocks


def test_a_disconnected_stream_ends_its_generation_within_a_second_and_frees_its_slot(served):
    url, llm = served
    _leave_after(url, 0, "visitor-who-leaves", "process_generating", 3)
    assert _wait_until(lambda: llm._lora_gate.running == 0, 1.0), "the abandoned generation kept running"


def test_a_disconnected_caption_request_ends_its_generation_within_a_second(served):
    url, llm = served
    _leave_after(url, 1, "caption-visitor", "process_starts", 1)
    assert _wait_until(lambda: llm._lora_gate.running == 1, 2)  # it started ...
    assert _wait_until(lambda: llm._lora_gate.running == 0, 1.0), "the abandoned caption kept generating"


def test_a_cancelled_stream_ends_its_generation_within_a_second(served):
    from gradio_client import Client

    url, llm = served
    job = Client(url, verbose=False).submit("hi", api_name="/answer")
    assert _wait_until(lambda: len(job.outputs()) >= 2, 10)
    job.cancel()
    assert _wait_until(lambda: llm._lora_gate.running == 0, 1.0)
