"""The left column every tab shares: image and examples, encoder/adapter/LLM pickers, status, generation settings;
and what a handler gets from it: `SidebarValues`, which turns the sidebar's values into (combination, settings,
model), given to each handler by `sidebar_handler`."""

from __future__ import annotations

import functools
import html
import inspect
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import gradio as gr

from vlm_demo.combos import ASSETS, Combo, adapter_families
from vlm_demo.llms import GenerationSettings
from vlm_demo.pipeline import VisionLanguageModel
from vlm_demo.ui.common import (
    CHAT_PRECISIONS,
    DEFAULT,
    DEFAULT_SETTINGS,
    MAX_NEW_TOKENS,
    gpu,
    load_image,
    load_vlm,
    remember_precision,
    resolve_combo,
    settings_from,
    upload_image,
    user_errors,
)
from vlm_demo.ui.pickers import adapter_choices, encoder_choices, llm_choices
from vlm_demo.ui.status import status_html

EXAMPLES = ASSETS / "examples"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
DECODING = {"concurrency_id": "decode", "concurrency_limit": 2}  # upload checks queue: each decode holds memory
PRECISION_INFO = ("int8 decodes faster; on the default adapter's held-out set it scored up to 5 points lower "
                  "(single-shape colour and shape 0.625 vs 0.675; README, Precision and speed)")


@dataclass
class Controls:
    """Components the tabs read: the image, the combination and the generation settings."""

    image: gr.Image
    encoder: gr.Dropdown
    adapter: gr.Dropdown
    llm: gr.Dropdown
    status: gr.HTML
    max_new_tokens: gr.Slider
    temperature: gr.Slider
    top_p: gr.Slider
    seed: gr.Number

    @property
    def combination(self) -> list[gr.components.Component]:
        return [self.encoder, self.adapter, self.llm]

    @property
    def settings(self) -> list[gr.components.Component]:
        return [self.max_new_tokens, self.temperature, self.top_p, self.seed]

    @property
    def values(self) -> list[gr.components.Component]:
        """The inputs a `sidebar_handler` takes in its `sidebar` parameter's place (SidebarValues' fields, in order)."""
        return [getattr(self, field.name) for field in fields(SidebarValues)]


@dataclass(frozen=True)
class SidebarValues:
    """The sidebar's values as a handler receives them, unchecked: the picked parts and the generation settings (in
    the order of `Controls.values` and of each endpoint's public parameters). Defaults: the default combination."""

    encoder: str = DEFAULT.encoder
    adapter: str = DEFAULT.adapter
    llm: str = DEFAULT.llm
    max_new_tokens: int = DEFAULT_SETTINGS.max_new_tokens
    temperature: float = DEFAULT_SETTINGS.temperature
    top_p: float = DEFAULT_SETTINGS.top_p
    seed: int = DEFAULT_SETTINGS.seed

    def checked(self) -> tuple[Combo, GenerationSettings]:
        """The combination and the generation settings; an impossible choice or nonsense settings raise gr.Error."""
        return (resolve_combo(self.encoder, self.adapter, self.llm),
                settings_from(self.max_new_tokens, self.temperature, self.top_p, self.seed))

    def pick(self, progress: Any = None,
             precision: str = "auto") -> tuple[Combo, GenerationSettings, VisionLanguageModel]:
        """(combination, settings, model): the model comes from the shared cache, its LLM's weights in `precision`,
        loading only once both are checked; `progress` hears how loading goes."""
        combo, settings = self.checked()
        return combo, settings, load_vlm(combo, progress, precision)


DEFAULT_VALUES = SidebarValues()
SETTINGS = tuple(field.name for field in fields(SidebarValues))[3:]  # the values after the three parts


def sidebar_handler(without: tuple[str, ...] = ()) -> Callable[[Callable], Callable]:
    """A Gradio handler that takes the sidebar's values as one `sidebar: SidebarValues` parameter. Gradio and API
    clients still see, and pass by position or by name, each value in that parameter's place under its field's name
    (the endpoint's public parameters), defaulting to the `sidebar` parameter's default's, if it has one. `without`:
    values the event does not send (the handler gets SidebarValues' defaults for them)."""
    def decorate(function: Callable) -> Callable:
        signature = inspect.signature(function)
        params = list(signature.parameters.values())
        at = list(signature.parameters).index("sidebar")
        default = params[at].default
        sent = [inspect.Parameter(field.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=field.type,
                                  default=getattr(default, field.name, inspect.Parameter.empty))
                for field in fields(SidebarValues) if field.name not in without]
        public = signature.replace(parameters=[*params[:at], *sent, *params[at + 1:]])

        def arguments(args: tuple, kwargs: dict[str, Any]) -> dict[str, Any]:
            bound = public.bind(*args, **kwargs)
            bound.apply_defaults()
            values = dict(bound.arguments)
            values["sidebar"] = SidebarValues(**{param.name: values.pop(param.name) for param in sent})
            return values

        if inspect.isgeneratorfunction(function):  # a stream stays one, for Gradio and for `user_errors`
            @functools.wraps(function)
            def handler(*args: Any, **kwargs: Any) -> Any:
                return (yield from function(**arguments(args, kwargs)))
        else:
            @functools.wraps(function)
            def handler(*args: Any, **kwargs: Any) -> Any:
                return function(**arguments(args, kwargs))

        handler.__signature__ = public  # what Gradio reads: the public parameters, the gr.Progress default
        hints = {name: hint for name, hint in function.__annotations__.items() if name != "sidebar"}
        handler.__annotations__ = {**hints, **{param.name: param.annotation for param in sent}}
        return handler

    return decorate


def example_files() -> list[str]:
    """Real photos first, then the synthetic shapes."""
    files = sorted(p for p in EXAMPLES.glob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    return [str(p) for p in sorted(files, key=lambda p: (p.name.startswith("shapes"), p.name))]


def build() -> Controls:
    """Render the shared column; call inside a gr.Column."""
    examples = example_files()
    first = next((path for path in examples if Path(path).stem == "chelsea"), examples[0] if examples else None)
    image = upload_image(value=first, label="Image", height=260, sources=["upload", "webcam", "clipboard"],
                         elem_id="vd-image")
    if examples:
        gr.Examples(examples=[[path] for path in examples], inputs=[image], label="Examples \u2014 photos and shapes",
                    examples_per_page=8, elem_id="vd-examples")
    with gr.Group():
        encoder = gr.Dropdown(encoder_choices(), value=DEFAULT.encoder, label="Vision encoder", elem_id="vd-encoder")
        adapter = gr.Dropdown(adapter_choices(DEFAULT.encoder, DEFAULT.llm), value=DEFAULT.adapter, label="Adapter",
                              elem_id="vd-adapter")
        llm = gr.Dropdown(llm_choices(), value=DEFAULT.llm, label="LLM", allow_custom_value=True,
                          info="or type a hub id (owner/name) where a hub is reachable", elem_id="vd-llm")
    status = gr.HTML(status_html(DEFAULT), elem_id="vd-status-box")
    with gr.Accordion("Generation settings", open=False, elem_id="vd-settings"):
        max_new_tokens = gr.Slider(1, MAX_NEW_TOKENS, value=DEFAULT_SETTINGS.max_new_tokens, step=1,
                                   label="Max new tokens")
        temperature = gr.Slider(0.0, 2.0, value=DEFAULT_SETTINGS.temperature, step=0.05, label="Temperature",
                                info="0 = greedy")
        top_p = gr.Slider(0.05, 1.0, value=DEFAULT_SETTINGS.top_p, step=0.05, label="Top-p")
        seed = gr.Number(DEFAULT_SETTINGS.seed, precision=0, minimum=0, label="Seed")
        weights = gr.Radio(list(CHAT_PRECISIONS), value="fp32", label="LLM weights (chat)", info=PRECISION_INFO,
                           elem_id="vd-precision")
    weights.input(remember_precision, weights, None, queue=False, api_visibility="private")
    controls = Controls(image, encoder, adapter, llm, status, max_new_tokens, temperature, top_p, seed)
    _wire(controls)
    return controls


def _wire(controls: Controls) -> None:
    controls.image.upload(check_upload, controls.image, None, api_visibility="private", show_progress="hidden",
                          **DECODING).failure(lambda: None, None, controls.image, api_visibility="private",
                                              queue=False)  # take a bad file out of the image box
    parts, quiet = controls.combination, {"api_visibility": "private", "queue": False}
    for component in parts:
        if component is controls.adapter:
            event = component.input(status_only, parts, [controls.status], **quiet)
        else:  # a new encoder or LLM changes which adapters are offered
            event = component.input(refresh_adapters, parts, [controls.adapter], **quiet)
            event = event.then(status_only, parts, [controls.status], **quiet)
        api = {"api_name": "load_combination"} if component is controls.adapter else {"api_visibility": "private"}
        event.then(prepare, parts, [controls.status], concurrency_id="load", concurrency_limit=2,
                   show_progress="minimal", **api)


def check_upload(image: Any) -> None:
    """Say at once when an upload cannot be used (every tab would refuse it later anyway)."""
    if image is not None:
        load_image(image)


def refresh_adapters(encoder: str, adapter: str, llm: str) -> Any:
    """Offer only adapters that can run on the encoder; keep the pick when it still can."""
    families = adapter_families(encoder or DEFAULT.encoder)
    value = adapter if adapter in families else DEFAULT.adapter
    return gr.update(choices=adapter_choices(encoder or DEFAULT.encoder, (llm or DEFAULT.llm).strip()), value=value)


def status_only(encoder: str, adapter: str, llm: str) -> str:
    try:
        return status_html(resolve_combo(encoder, adapter, llm))
    except gr.Error as error:
        return f'<div class="vd-status"><span class="vd-badge vd-warn">Impossible choice</span>' \
               f'<div class="vd-note">{html.escape(str(error.message))}</div></div>'


@user_errors
@gpu
@sidebar_handler(without=SETTINGS)
def prepare(sidebar: SidebarValues, progress: gr.Progress = gr.Progress()) -> str:  # noqa: B008
    """Load the picked combination now (shared cache), so the first answer does not wait for it."""
    combo, _, vlm = sidebar.pick(progress)
    return status_html(combo, vlm)
