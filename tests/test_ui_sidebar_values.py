"""The sidebar's values -> (combination, settings, model) in one place (`vlm_demo.ui.sidebar.SidebarValues`): every
handler builds its model through it and refuses what it refuses, and the endpoints keep their public parameters."""

from __future__ import annotations

import ast
import inspect
import shutil
from pathlib import Path

import gradio as gr
import pytest
from app_helpers import PHOTO
from gradio import helpers, utils

from vlm_demo.ui import alignment, chat, compare, sidebar
from vlm_demo.ui.gate import inputs

PARTS = ["efficientnet-lite0", "linear", "smollm2-135m-instruct"]
SETTINGS = [8, 0.0, 0.9, 0]
ENDPOINTS = {  # handler -> the parameters API clients see (in order), as before the sidebar had one helper
    chat.respond: ["image", "message", "history", "encoder", "adapter", "llm", *sidebar.SETTINGS],
    chat.describe: ["image", "history", "encoder", "adapter", "llm", *sidebar.SETTINGS],
    chat.regenerate: ["history", "encoder", "adapter", "llm", *sidebar.SETTINGS],
    chat.answer_again: ["history", "again", "encoder", "adapter", "llm", *sidebar.SETTINGS],
    chat.caption: ["image", "prompt", "encoder", "adapter", "llm", *sidebar.SETTINGS],
    chat.caption_batch: ["images", "prompt", "encoder", "adapter", "llm", *sidebar.SETTINGS],
    compare.compare: ["image", "prompt", "adapters", "encoder", "llm", *sidebar.SETTINGS],
    alignment.analyse: ["image", "fit", "encoder", "adapter", "llm", *sidebar.SETTINGS],
    sidebar.prepare: ["encoder", "adapter", "llm"],
}


class Stopped(gr.Error):
    """Raised by the fake loader: the handler got as far as building its model."""


@pytest.fixture
def upload() -> str:
    folder = inputs.upload_folder() / "sidebar-values"
    folder.mkdir(parents=True, exist_ok=True)
    return str(shutil.copy(PHOTO, folder / "chelsea.jpg"))


@pytest.fixture
def loads(monkeypatch) -> list:
    """What the one helper was asked to load: (combination, precision); loading stops the handler there."""
    asked: list = []

    def load(combo, progress=None, precision="auto"):
        asked.append((combo, precision))
        raise Stopped("stopped where the model is loaded")

    monkeypatch.setattr(sidebar, "load_vlm", load)
    return asked


def calls(upload: str, parts: list, settings: list) -> dict:
    """Each handler called as Gradio calls it (positional values), the sidebar's values at their public places."""
    history = [{"role": "user", "content": [{"path": upload}, "What is it?"]}]
    again = {"start": 0, "text": "What is it?", "files": [upload]}
    return {
        "respond": lambda: list(chat.respond(upload, "What is it?", [], *parts, *settings)),
        "describe": lambda: list(chat.describe(upload, [], *parts, *settings)),
        "regenerate": lambda: list(chat.regenerate(history, *parts, *settings)),
        "answer_again": lambda: list(chat.answer_again(history, again, *parts, *settings)),
        "caption": lambda: chat.caption(upload, "Describe.", *parts, *settings),
        "caption_batch": lambda: chat.caption_batch([upload], "Describe.", *parts, *settings),
        "compare": lambda: list(compare.compare(upload, "Describe.", [parts[1], "mlp"], parts[0], parts[2],
                                                *settings)),
        "alignment": lambda: list(alignment.analyse(upload, "the vocabulary", *parts, *settings)),
        "load_combination": lambda: sidebar.prepare(*parts),
    }


HANDLERS = list(calls("", PARTS, SETTINGS))


@pytest.mark.parametrize("name", HANDLERS)
def test_every_handler_builds_its_model_through_the_one_helper(upload, loads, name):
    with pytest.raises(Stopped):
        calls(upload, PARTS, SETTINGS)[name]()
    (combo, precision), = loads
    assert [combo.encoder, combo.adapter, combo.llm] == PARTS and precision == "auto"


@pytest.mark.parametrize("name", [name for name in HANDLERS if name != "load_combination"])
@pytest.mark.parametrize("parts, settings, title", [
    (PARTS, [8, 5.0, 0.9, 0], "Bad settings"),
    (PARTS, ["lots", 0.0, 0.9, 0], "Bad settings"),
    (["efficientnet-lite0", "linear", "not a model"], SETTINGS, "Impossible choice"),
    (["no-such-encoder", "linear", PARTS[2]], SETTINGS, "Impossible choice"),
], ids=["temperature", "max-new-tokens", "llm", "encoder"])
def test_every_handler_refuses_bad_sidebar_values_before_loading(upload, loads, name, parts, settings, title):
    with pytest.raises(gr.Error) as caught:
        calls(upload, parts, settings)[name]()
    assert caught.value.title == title and loads == []


def test_the_endpoints_keep_their_public_parameters_progress_and_streaming():
    for handler, names in ENDPOINTS.items():
        positional = [name for name in inspect.signature(handler).parameters if name != "progress"]
        assert positional == names, handler.__name__
        _, progress, _, _ = helpers.special_args(handler, [None] * len(names))
        assert progress == (len(names) if handler not in (chat.caption, chat.caption_batch) else None)
    streams = (chat.respond, chat.describe, chat.regenerate, chat.answer_again, compare.compare, alignment.analyse)
    assert all(inspect.isgeneratorfunction(handler) for handler in streams)
    hints = utils.get_type_hints(chat.caption)  # gr.api builds the /caption endpoint from these
    assert [hints[name] for name in ENDPOINTS[chat.caption][2:]] == [str, str, str, int, float, float, int]
    defaults = {name: p.default for name, p in inspect.signature(chat.caption_batch).parameters.items()}
    assert [defaults[field] for field in ENDPOINTS[chat.caption][2:]] == list(vars(sidebar.DEFAULT_VALUES).values())


def test_no_tab_resolves_checks_or_loads_the_sidebar_values_itself():
    ui = Path(sidebar.__file__).parent
    helpers_only = {"resolve_combo", "settings_from", "load_vlm"}  # the helper's parts, in ui/common.py
    for path in ui.glob("*.py"):
        if path.name in ("common.py", "sidebar.py"):
            continue
        called = {node.func.id for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Call)
                  and isinstance(node.func, ast.Name)}
        assert not called & helpers_only, path.name
