"""Shared UI pieces: safe uploads, combination choices and checks, generation settings, status text, error wrapping."""

from __future__ import annotations

import base64
import functools
import html
import inspect
import logging
import os
import re
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import gradio as gr
from PIL import Image

from vlm_demo.adapters import ADAPTERS, CheckpointError
from vlm_demo.combos import COMBOS, DEFAULT_COMBO, Combo
from vlm_demo.encoders import ENCODERS
from vlm_demo.images import ImageError, open_image
from vlm_demo.llms import LLMS, GenerationSettings
from vlm_demo.pipeline import VisionLanguageModel
from vlm_demo.sources import hub_cached, hub_offline
from vlm_demo.ui.models_cache import LoadError, get_cache

log = logging.getLogger(__name__)
DEFAULT = COMBOS[DEFAULT_COMBO]
STAGE_MAP_ENCODERS = {"efficientnet-lite0", "resnet-50"}  # encoders that hand stage maps to `multistage`
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
MAX_NEW_TOKENS = 256
_HUB_STATE: list = []  # [checked at (monotonic seconds), reachable]

try:  # ZeroGPU on Hugging Face Spaces; a no-op decorator everywhere else
    import spaces

    gpu: Callable = spaces.GPU
except ImportError:  # pragma: no cover - spaces is in requirements.txt

    def gpu(function: Callable) -> Callable:
        return function


def _raw_upload(payload: Any) -> str | bytes | None:
    """An upload's path (or a data URL's bytes), untouched: `open_image`, not Gradio, judges the file."""
    if payload is None:
        return None
    url = getattr(payload, "url", None) or ""
    if url.startswith("data:"):
        return base64.b64decode(url.split(",", 1)[1] if "," in url else "", validate=False)
    return payload.path


def upload_image(**options: Any) -> gr.Image:
    """A gr.Image whose handler receives the uploaded file itself, so a bad file gets our message, not a crash.

    (The preprocess step is replaced on the instance: subclassing a Gradio component writes a .pyi stub file.)
    """
    image = gr.Image(type="filepath", **options)
    image.preprocess = _raw_upload  # type: ignore[method-assign]
    return image


def load_image(value: Any) -> Image.Image:
    """The picked image as RGB, or a gr.Error saying what is wrong with it."""
    if value is None or (isinstance(value, str) and not value):
        raise gr.Error("Upload an image or pick an example first.", title="No image")
    if isinstance(value, dict):  # an API client's FileData
        value = value.get("path")
    if hasattr(value, "path"):
        value = value.path
    try:
        image = open_image(value)
    except ImageError as error:
        reason = str(error).split(": ", 1)[-1] if isinstance(value, str) else str(error).removeprefix("image: ")
        raise gr.Error(f"This upload cannot be used: {reason}.", title="Bad image") from None
    return image


# ---------------------------------------------------------------------------------------------- choices

def encoder_choices() -> list[tuple[str, str]]:
    return [(f"{name}{_where(spec.availability())}", name) for name, spec in ENCODERS.items()]


def llm_choices() -> list[tuple[str, str]]:
    return [(f"{name}{_where(spec.availability())}", name) for name, spec in LLMS.items()]


def _where(availability: str) -> str:
    if "packaged" in availability:
        return "  \u00b7  offline"
    if "hub cache" in availability:
        return "  \u00b7  hub cache"
    return "  \u00b7  needs the hub"


def adapter_families(encoder: str) -> list[str]:
    """Adapter families that can run on an encoder (multistage needs CNN stage maps)."""
    return [kind for kind in ADAPTERS if kind != "multistage" or encoder in STAGE_MAP_ENCODERS]


def adapter_choices(encoder: str, llm: str) -> list[tuple[str, str]]:
    """(label, family) pairs; the label says whether a trained checkpoint ships for this encoder and LLM."""
    choices = []
    for kind in adapter_families(encoder):
        combo = find_combo(encoder, kind, llm)
        state = "trained" if combo is not None and combo.trained else "untrained"
        choices.append((f"{kind}  \u00b7  {state}", kind))
    return choices


def trained_families(encoder: str, llm: str) -> list[str]:
    return [kind for kind in adapter_families(encoder) if (c := find_combo(encoder, kind, llm)) and c.trained]


def find_combo(encoder: str, adapter: str, llm: str) -> Combo | None:
    """The registered combination with these three parts, if any."""
    for name, combo in COMBOS.items():
        if name != DEFAULT_COMBO and (combo.encoder, combo.adapter, combo.llm) == (encoder, adapter, llm):
            return combo
    return None


def resolve_combo(encoder: str | None, adapter: str | None, llm: str | None) -> Combo:
    """A registered combination, or an ad-hoc one with an untrained adapter; impossible choices raise gr.Error."""
    encoder, adapter, llm = (encoder or DEFAULT.encoder), (adapter or DEFAULT.adapter), (llm or DEFAULT.llm).strip()
    if encoder not in ENCODERS:
        raise gr.Error(f"Unknown encoder '{encoder}'. Pick one of: {', '.join(ENCODERS)}.", title="Impossible choice")
    if adapter not in ADAPTERS:
        raise gr.Error(f"Unknown adapter '{adapter}'. Pick one of: {', '.join(ADAPTERS)}.", title="Impossible choice")
    if llm not in LLMS and not HUB_ID.match(llm):
        raise gr.Error(f"Unknown LLM '{llm}': pick one from the list or type a hub id such as owner/model-name.",
                       title="Impossible choice")
    if adapter not in adapter_families(encoder):
        raise gr.Error(f"The {adapter} adapter needs CNN stage maps, which {encoder} does not give; use "
                       f"{' or '.join(sorted(STAGE_MAP_ENCODERS))}.", title="Impossible choice")
    found = find_combo(encoder, adapter, llm)
    if found is not None:
        return found
    options = next((c.adapter_options for c in COMBOS.values() if c.adapter == adapter), {})
    return Combo(f"{adapter} on {encoder} \u2192 {llm}", encoder, adapter, llm, checkpoint=None,
                 adapter_options=dict(options), description="ad-hoc combination (no checkpoint ships)")


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub answers on its port (remembered for a minute); False in HF_HUB_OFFLINE mode."""
    if hub_offline():
        return False
    now = time.monotonic()
    if _HUB_STATE and now - _HUB_STATE[0] < 60:
        return _HUB_STATE[1]
    host = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co").hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        reachable = True
    except OSError:
        reachable = False
    _HUB_STATE[:] = [now, reachable]
    return reachable


def hub_parts(combo: Combo) -> list[str]:
    """Parts of a combination that are neither packaged, in the HF cache, nor loaded: they need the hub."""
    cache, parts = get_cache(), []
    if not cache.has("encoder", combo.encoder) and ENCODERS[combo.encoder].availability().startswith("needs hub"):
        parts.append(f"encoder {combo.encoder}")
    spec = LLMS.get(combo.llm)
    needs = spec.availability().startswith("needs hub") if spec else not hub_cached(combo.llm)
    if needs and not cache.has("llm", combo.llm):
        parts.append(f"LLM {combo.llm}")
    checkpoint = combo.checkpoint_path
    if checkpoint and not Path(checkpoint).is_dir() and not hub_cached(checkpoint):
        parts.append(f"adapter checkpoint {checkpoint}")
    return parts


def load_vlm(combo: Combo, progress: Any = None) -> VisionLanguageModel:
    """The combination from the shared cache, reporting loading through gr.Progress; failures become gr.Error."""
    def report(fraction: float, text: str) -> None:
        if progress is not None:
            progress(fraction, desc=text)

    if not get_cache().is_loaded(combo):
        remote = hub_parts(combo)
        if remote and not hub_reachable():
            raise gr.Error(f"{' and '.join(remote).capitalize()} must be downloaded from the Hugging Face hub, which "
                           "this server cannot reach. The packaged parts (efficientnet-lite0, dinov2-small, "
                           "smollm2-135m-instruct) work offline.", title="Needs the hub")
    try:
        return get_cache().vlm(combo, report)
    except (LoadError, CheckpointError, ValueError) as error:
        raise gr.Error(str(error).splitlines()[0], title="Could not load the combination") from None


def settings_from(max_new_tokens: Any, temperature: Any, top_p: Any, seed: Any) -> GenerationSettings:
    """Validated generation settings (gr.Error on nonsense values from an API client)."""
    try:
        tokens = int(max_new_tokens if max_new_tokens is not None else 48)
        temp = float(temperature if temperature is not None else 0.0)
        nucleus = float(top_p if top_p is not None else 0.9)
        seed_value = int(seed) if seed not in (None, "") else 0
    except (TypeError, ValueError):
        raise gr.Error("Generation settings must be numbers.", title="Bad settings") from None
    if not 1 <= tokens <= MAX_NEW_TOKENS:
        raise gr.Error(f"Max new tokens must be between 1 and {MAX_NEW_TOKENS}.", title="Bad settings")
    if not 0.0 <= temp <= 2.0 or not 0.0 < nucleus <= 1.0 or seed_value < 0:
        raise gr.Error("Temperature must be in [0, 2], top-p in (0, 1] and the seed 0 or more.", title="Bad settings")
    return GenerationSettings(max_new_tokens=tokens, temperature=temp, top_p=nucleus, seed=seed_value)


# ---------------------------------------------------------------------------------------------- status

def human_count(count: int) -> str:
    for size, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if count >= size:
            return f"{count / size:.2f} {unit}".replace(".00 ", " ")
    return str(count)


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def status_html(combo: Combo, vlm: VisionLanguageModel | None = None) -> str:
    """The trained/untrained badge and one line about the combination."""
    if combo.trained:
        badge = '<span class="vd-badge vd-ok">Trained adapter</span>'
        note = f"checkpoint <code>{html.escape(combo.checkpoint or '')}</code>"
    else:
        badge = '<span class="vd-badge vd-warn">Untrained adapter</span>'
        note = ("no checkpoint ships for this combination yet: the adapter has <b>random weights</b>, so answers "
                "describe noise, not the image")
    parts = f"{html.escape(combo.encoder)} \u2192 <b>{html.escape(combo.adapter)}</b> \u2192 {html.escape(combo.llm)}"
    if vlm is None:
        vlm = _loaded(combo)
    if vlm is not None:
        size = (f"{human_count(vlm.adapter.num_parameters())} adapter parameters \u00b7 "
                f"{plural(vlm.adapter.num_output_tokens, 'image token')} \u00b7 "
                + ("LoRA on the LLM (trained with the adapter) \u00b7 " if vlm.lora else "") + "loaded")
    else:
        size = "loads on first use"
    return (f'<div class="vd-status">{badge}<span class="vd-parts">{parts}</span>'
            f'<div class="vd-note">{note}</div><div class="vd-note">{size}</div></div>')


def _loaded(combo: Combo) -> VisionLanguageModel | None:
    cache = get_cache()
    return cache.vlm(combo) if cache.is_loaded(combo) else None


# ---------------------------------------------------------------------------------------------- errors

def user_errors(function: Callable) -> Callable:
    """Turn any unexpected exception into a one-line gr.Error (full traceback only in the server log)."""
    def convert(error: Exception) -> gr.Error:
        log.exception("request failed")
        line = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
        return gr.Error(f"Something went wrong: {line}", title="Request failed")

    if inspect.isgeneratorfunction(function):
        @functools.wraps(function)
        def stream(*args: Any, **kwargs: Any) -> Any:
            try:
                yield from function(*args, **kwargs)
            except gr.Error:
                raise
            except Exception as error:  # noqa: BLE001 - shown to the user as one line
                raise convert(error) from None

        return stream

    @functools.wraps(function)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as error:  # noqa: BLE001 - shown to the user as one line
            raise convert(error) from None

    return call


def message_text(content: Any) -> str:
    """Plain text of a chatbot message's content (a string or Gradio's list of typed parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return str(content.get("text") or content.get("content") or "")
    if isinstance(content, (list, tuple)):
        return "".join(message_text(part) for part in content)
    return ""
