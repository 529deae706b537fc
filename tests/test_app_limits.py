"""What one visitor can ask of the shared app: queued upload checks, message and history caps, temp files, URLs."""

from __future__ import annotations

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
    import gradio as gr

    from vlm_demo.pipeline import MAX_CONVERSATION_CHARS, MAX_MESSAGE_CHARS
    from vlm_demo.ui import chat, common

    monkeypatch.setattr(common, "load_vlm", lambda *_: pytest.fail("a model was loaded for a refused message"))
    monkeypatch.setattr(chat, "load_vlm", lambda *_: pytest.fail("a model was loaded for a refused message"))
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


def test_message_boxes_carry_the_cap_to_the_browser(app):
    from vlm_demo.pipeline import MAX_MESSAGE_CHARS

    boxes = {block.elem_id: block for block in app.blocks.values() if getattr(block, "elem_id", None)}
    assert boxes["vd-message"].max_length == MAX_MESSAGE_CHARS
    assert boxes["vd-compare-prompt"].max_length == MAX_MESSAGE_CHARS
