"""Shared UI plumbing: safe uploads, loading a combination from the shared cache, settings and errors as gr.Error."""

from __future__ import annotations

import ctypes
import functools
import hashlib
import inspect
import io
import logging
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image

from vlm_demo import combos, pipeline
from vlm_demo.adapters import CheckpointError
from vlm_demo.combos import COMBOS, DEFAULT_COMBO, Combo, ComboError
from vlm_demo.encoders import ENCODERS
from vlm_demo.hub import HubError, check_hub_id, hub_reachable
from vlm_demo.images import ImageError, open_image
from vlm_demo.llms import LLMS, GenerationSettings
from vlm_demo.llms.generation import GenerationCancelled
from vlm_demo.models_cache import LoadError, get_cache
from vlm_demo.pipeline import VisionLanguageModel
from vlm_demo.sources import hub_cached
from vlm_demo.ui.gate.inputs import upload_folder, uploaded_file

log = logging.getLogger(__name__)
DEFAULT = COMBOS[DEFAULT_COMBO]
DEFAULT_SETTINGS = GenerationSettings()
MAX_NEW_TOKENS = 256

try:  # ZeroGPU on Hugging Face Spaces; a no-op decorator everywhere else
    import spaces

    gpu: Callable = spaces.GPU
except ImportError:  # pragma: no cover - spaces is in requirements.txt
    spaces = None

    def gpu(function: Callable) -> Callable:
        return function


def gpu_for(seconds: Callable[..., int]) -> Callable[[Callable], Callable]:
    """`@spaces.GPU` whose time slot `seconds(*args, **kwargs)` sizes from the call's own arguments (ZeroGPU's
    default of 60 s is too short for some calls and wastes quota on others); a no-op where spaces is missing."""
    return spaces.GPU(duration=seconds) if spaces is not None else gpu


def upload_image(**options: Any) -> gr.Image:
    """The image input: `gate.guard` gives it a preprocess that passes the uploaded file itself to the handler, so a
    bad file gets our message (and only uploads are taken)."""
    return gr.Image(type="filepath", **options)


def load_image(value: Any) -> Image.Image:
    """The picked image (an upload, or a pasted image's bytes) as RGB, or a gr.Error saying what is wrong with it."""
    if value is None or (isinstance(value, str) and not value):
        raise gr.Error("Upload an image or pick an example first.", title="No image")
    source = value if isinstance(value, bytes) else uploaded_file(value)
    try:
        return open_image(source)
    except ImageError as error:
        reason = str(error).split(": ", 1)[-1] if isinstance(source, str) else str(error).removeprefix("image: ")
        raise gr.Error(f"This upload cannot be used: {reason}.", title="Bad image") from None


def resolve_combo(encoder: str | None, adapter: str | None, llm: str | None) -> Combo:
    """The combination for the picked parts (see `combos.resolve_combo`); impossible choices raise gr.Error."""
    try:
        return combos.resolve_combo(encoder, adapter, llm)
    except ComboError as error:
        raise gr.Error(str(error), title="Impossible choice") from None


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


# The LLM weights each visitor (Gradio session) picked for chat answers, most recent last; a few thousand at most.
_PRECISIONS: OrderedDict[str, str] = OrderedDict()
_PRECISIONS_LOCK = threading.Lock()
MAX_PRECISION_SESSIONS = 4096
CHAT_PRECISIONS = ("fp32", "int8")


def _session() -> str | None:
    from gradio.context import LocalContext

    return getattr(LocalContext.request.get(None), "session_hash", None)


def remember_precision(choice: str) -> None:
    """Keep this visitor's choice of LLM weights for their chat answers (the sidebar's switch)."""
    if choice not in CHAT_PRECISIONS:
        raise gr.Error(f"LLM weights must be one of {', '.join(CHAT_PRECISIONS)}.", title="Impossible choice")
    session = _session()
    if session:
        with _PRECISIONS_LOCK:
            _PRECISIONS[session] = choice
            _PRECISIONS.move_to_end(session)
            while len(_PRECISIONS) > MAX_PRECISION_SESSIONS:
                _PRECISIONS.popitem(last=False)


def session_precision() -> str:
    """The LLM weights this visitor picked, or `auto` (the default here) when they did not."""
    with _PRECISIONS_LOCK:
        return _PRECISIONS.get(_session() or "", "auto")


def load_vlm(combo: Combo, progress: Any = None, precision: str = "auto") -> VisionLanguageModel:
    """The combination from the shared cache, its LLM's weights in `precision`, reporting loading through
    gr.Progress; failures become gr.Error."""
    def report(fraction: float, text: str) -> None:
        if progress is not None:
            progress(fraction, desc=text)

    if combo.llm not in LLMS:
        try:
            check_hub_id(combo.llm)
        except HubError as error:
            raise gr.Error(f"{error}.", title="Not available here") from None
    if not get_cache().is_loaded(combo):
        remote = hub_parts(combo)
        if remote and not hub_reachable():
            raise gr.Error(f"{' and '.join(remote).capitalize()} must be downloaded from the Hugging Face hub, which "
                           "this server cannot reach. The packaged parts (efficientnet-lite0, dinov2-small, "
                           "smollm2-135m-instruct) work offline.", title="Needs the hub")
    try:
        return get_cache().vlm(combo, report, precision)
    except (LoadError, CheckpointError, ValueError) as error:
        raise gr.Error(str(error).splitlines()[0], title="Could not load the combination") from None


def check_prompt(message: str, history: list[tuple[str, str]] | None = None, vlm: VisionLanguageModel | None = None,
                 images_per_turn: list[int] | None = None) -> None:
    """The pipeline's message, conversation and (given the model) prompt-token caps, as a gr.Error with a title."""
    try:
        pipeline.check_prompt(message, history)
        if vlm is not None:
            pipeline.check_prompt_tokens(vlm.llm, vlm.prompt_text(message, history, images_per_turn))
    except pipeline.PromptTooLong as error:
        raise too_long(error) from None


def too_long(error: pipeline.PromptTooLong) -> gr.Error:
    return gr.Error(str(error)[0].upper() + str(error)[1:] + ".", title="Too long")


def settings_from(max_new_tokens: Any, temperature: Any, top_p: Any, seed: Any) -> GenerationSettings:
    """A handler's generation values as checked settings (missing ones take the defaults; gr.Error on nonsense)."""
    try:
        settings = GenerationSettings(
            max_new_tokens=int(max_new_tokens if max_new_tokens is not None else DEFAULT_SETTINGS.max_new_tokens),
            temperature=float(temperature if temperature is not None else DEFAULT_SETTINGS.temperature),
            top_p=float(top_p if top_p is not None else DEFAULT_SETTINGS.top_p),
            seed=int(seed) if seed not in (None, "") else DEFAULT_SETTINGS.seed)
    except (TypeError, ValueError, OverflowError):
        raise gr.Error("Generation settings must be finite numbers.", title="Bad settings") from None
    try:
        return settings.check(most_new_tokens=MAX_NEW_TOKENS)
    except ValueError as error:
        message = str(error)
        raise gr.Error(message[0].upper() + message[1:] + ".", title="Bad settings") from None


@functools.cache
def _libc() -> Any:
    try:
        return ctypes.CDLL("libc.so.6") if sys.platform.startswith("linux") else None
    except OSError:
        return None


def return_freed_memory() -> None:
    """Hand the memory a finished request freed back to the system: glibc keeps it in per-thread arenas otherwise,
    so a server that answered many requests at once stays large after they end (Linux/glibc only)."""
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


def user_errors(function: Callable) -> Callable:
    """Turn any unexpected exception into a one-line gr.Error (full traceback only in the server log); memory the
    request freed is returned to the system when it ends."""
    def convert(error: Exception) -> gr.Error:
        if isinstance(error, GenerationCancelled):  # nobody is waiting for this answer
            return gr.Error("The request was cancelled.", title="Cancelled", print_exception=False)
        if isinstance(error, pipeline.PromptTooLong):
            return too_long(error)
        log.exception("request failed")
        return gr.Error("Something went wrong on the server (it is logged). Try again, or another combination.",
                        title="Request failed")

    if inspect.isgeneratorfunction(function):
        @functools.wraps(function)
        def stream(*args: Any, **kwargs: Any) -> Any:
            try:
                yield from function(*args, **kwargs)
            except gr.Error:
                raise
            except Exception as error:  # noqa: BLE001 - shown to the user as one line
                raise convert(error) from None
            finally:
                return_freed_memory()

        return stream

    @functools.wraps(function)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as error:  # noqa: BLE001 - shown to the user as one line
            raise convert(error) from None
        finally:
            return_freed_memory()

    return call


def message_text(content: Any) -> str:
    """Plain text of a chatbot message's content (a string or Gradio's list of typed parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        if content.get("type") == "file" or "path" in content or "file" in content:
            return ""
        return str(content.get("text") or content.get("content") or "")
    if isinstance(content, (list, tuple)):
        return "".join(message_text(part) for part in content)
    return ""


def message_files(content: Any) -> list[str]:
    """Paths of the files in a chatbot message's content (Gradio's file parts, in order)."""
    if isinstance(content, (list, tuple)):
        return [path for part in content for path in message_files(part)]
    if isinstance(content, dict):
        file = content.get("file") if isinstance(content.get("file"), dict) else content
        path = file.get("path")
        return [str(path)] if path and (content.get("type") in (None, "file")) else []
    path = getattr(content, "path", None)
    return [str(path)] if path else []


def stored_upload(value: Any) -> str:
    """A path for a picked image, so the transcript can show it: a pasted image (bytes) is saved in Gradio's cache."""
    if isinstance(value, (bytes, bytearray)):
        load_image(bytes(value))  # refused before anything is written
        kind = (Image.open(io.BytesIO(value)).format or "png").lower()
        folder = upload_folder() / "pasted"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{hashlib.sha1(value).hexdigest()[:16]}.{kind}"
        path.write_bytes(value)
        return str(path)
    return uploaded_file(value)
