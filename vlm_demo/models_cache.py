"""A thread-safe LRU of loaded encoders, LLMs and adapters under a memory budget, shared by every tab and user."""

from __future__ import annotations

import gc
import logging
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from vlm_demo.combos import Combo
from vlm_demo.encoders import build_encoder
from vlm_demo.hub import memory_budget
from vlm_demo.llms import load_llm
from vlm_demo.llms.quantize import resolve_llm_precision
from vlm_demo.pipeline import VisionLanguageModel
from vlm_demo.sources import default_device

log = logging.getLogger(__name__)
Report = Callable[[float, str], None]


class LoadError(RuntimeError):
    """A part could not be loaded; the message is one line meant for the user."""


def module_bytes(module: Any) -> int:
    """Bytes held by a module's parameters and buffers (0 for anything that is not a torch module), plus what an LLM
    may hold in its cache of conversation prefixes."""
    reserved = getattr(getattr(module, "prefixes", None), "max_bytes", 0)
    if not isinstance(module, nn.Module):
        module = getattr(module, "model", None)
    if not isinstance(module, nn.Module):
        return 0
    tensors = list(module.parameters()) + list(module.buffers())
    return sum(t.numel() * t.element_size() for t in tensors) + reserved


PREFIX_SHARE = 16  # an LLM's conversation-prefix cache may take at most this fraction of the budget


@dataclass
class Entry:
    value: Any
    nbytes: int
    seconds: float
    depends_on: tuple[tuple[str, str], ...] = ()
    last_used: float = field(default_factory=time.monotonic)


def combo_key(combo: Combo) -> tuple[str, str]:
    """Cache key of a combination's assembled model: changes when a checkpoint appears on disk."""
    options = ",".join(f"{k}={v}" for k, v in sorted(combo.adapter_options.items()))
    return ("vlm", f"{combo.encoder}|{combo.adapter}|{combo.llm}|{combo.checkpoint_path}|{options}")


def _one_line(error: BaseException, limit: int = 300) -> str:
    text = str(error).strip().splitlines()
    line = text[0] if text else type(error).__name__
    return line if len(line) <= limit else line[: limit - 1] + "\u2026"


class ModelCache:
    """Encoders and LLMs are loaded once and shared by every combination that uses them.

    Entries are evicted least-recently-used first when the estimated weight memory passes the budget; the parts
    of the combination being served are never evicted. Loading the same part twice at once waits for one load.
    """

    def __init__(self, budget_mb: int | None = None) -> None:
        self.budget = budget_mb * 2**20 if budget_mb is not None else memory_budget()
        self._entries: OrderedDict[tuple[str, str], Entry] = OrderedDict()
        self._lock = threading.RLock()
        self._load_locks: dict[tuple[str, str], threading.Lock] = {}
        self._evicted: list[tuple[weakref.ref, int]] = []  # parts dropped from the cache that something still holds

    # ------------------------------------------------------------------ public
    def vlm(self, combo: Combo, report: Report | None = None, precision: str = "auto") -> VisionLanguageModel:
        """The assembled model for a combination, its LLM's weights in `precision`, loading only the parts not in
        memory yet. The default precision keeps the plain keys; another one is a part of its own."""
        device = default_device()
        chosen = resolve_llm_precision(precision, device)
        suffix = "" if chosen == resolve_llm_precision("auto", device) else f"@{chosen}"
        kind, name = combo_key(combo)
        key = (kind, name + suffix)
        cached = self._get(key)
        if cached is not None:
            return cached
        say = report or (lambda fraction, text: None)
        encoder = self._load(("encoder", combo.encoder), lambda: build_encoder(combo.encoder).to(device), say, 0.05,
                             f"Loading encoder {combo.encoder}\u2026")
        llm_key = ("llm", combo.llm + suffix)
        llm = self._load(llm_key, lambda: self._llm(combo.llm, device, chosen), say, 0.35,
                         f"Loading LLM {combo.llm}{f' ({chosen})' if suffix else ''}\u2026")

        def assemble() -> VisionLanguageModel:
            return VisionLanguageModel.from_combo(combo, llm=llm, encoder=encoder)

        adapter_text = f"Loading {'trained' if combo.trained else 'untrained'} {combo.adapter} adapter\u2026"
        vlm = self._load(key, assemble, say, 0.85, adapter_text,
                         depends_on=(("encoder", combo.encoder), llm_key))
        say(1.0, "Ready")
        return vlm

    def _llm(self, name: str, device: Any, precision: str) -> Any:
        """An LLM in `precision`, its prefix cache sized within the budget."""
        llm = load_llm(name, device=device, precision=precision)
        prefixes = getattr(llm, "prefixes", None)
        if prefixes is not None:
            prefixes.max_bytes = min(prefixes.max_bytes, self.budget // PREFIX_SHARE)
        return llm

    def is_loaded(self, combo: Combo) -> bool:
        with self._lock:
            return combo_key(combo) in self._entries

    def has(self, kind: str, name: str) -> bool:
        """Whether an encoder or LLM is in memory (kind "encoder" or "llm")."""
        with self._lock:
            return (kind, name) in self._entries

    def loaded(self) -> list[dict[str, Any]]:
        """What is in memory, most recently used last."""
        with self._lock:
            return [{"kind": kind, "name": name, "mb": round(entry.nbytes / 2**20, 1),
                     "load_seconds": round(entry.seconds, 2)} for (kind, name), entry in self._entries.items()]

    def memory_bytes(self) -> int:
        """Weights held: the cached parts, plus evicted ones still alive (a request in flight may keep them)."""
        with self._lock:
            return sum(entry.nbytes for entry in self._entries.values()) + self._evicted_alive_bytes()

    def _evicted_alive_bytes(self) -> int:
        self._evicted = [(ref, nbytes) for ref, nbytes in self._evicted if ref() is not None]
        return sum(nbytes for _, nbytes in self._evicted)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    # ------------------------------------------------------------------ internals
    def _get(self, key: tuple[str, str]) -> Any | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._touch(key, entry)
            return entry.value

    def _touch(self, key: tuple[str, str], entry: Entry) -> None:
        entry.last_used = time.monotonic()
        self._entries.move_to_end(key)
        for dependency in entry.depends_on:  # using a combination also uses its encoder and LLM
            if dependency in self._entries:
                self._entries.move_to_end(dependency)
        self._entries.move_to_end(key)

    def _load(self, key: tuple[str, str], loader: Callable[[], Any], say: Report, fraction: float, text: str,
              depends_on: tuple[tuple[str, str], ...] = ()) -> Any:
        cached = self._get(key)
        if cached is not None:
            return cached
        with self._lock:
            load_lock = self._load_locks.setdefault(key, threading.Lock())
        with load_lock:
            cached = self._get(key)  # another user may have loaded it while we waited
            if cached is not None:
                return cached
            say(fraction, text)
            start = time.perf_counter()
            try:
                value = loader()
            except Exception as error:  # noqa: BLE001 - any loading failure becomes one readable line
                log.exception("loading %s failed", key)
                kind, name = key
                what = {"encoder": "the encoder", "llm": "the LLM", "vlm": "the adapter"}.get(kind, kind)
                label = name.split("|")[2] if kind == "vlm" else name
                raise LoadError(f"Could not load {what} '{label}': {_one_line(error)}") from error
            seconds = time.perf_counter() - start
            nbytes = module_bytes(value.adapter if isinstance(value, VisionLanguageModel) else value)
            with self._lock:
                self._entries[key] = Entry(value, nbytes, seconds, depends_on)
                self._touch(key, self._entries[key])
                self._evict(keep={key, *depends_on})
            log.info("loaded %s in %.1f s (%.0f MB)", key, seconds, nbytes / 2**20)
            return value

    def _evict(self, keep: set[tuple[str, str]]) -> None:
        gc.collect()  # evicted parts that only reference cycles kept alive are freed before they are counted
        while self.memory_bytes() > self.budget:
            victim = next((key for key in self._entries if key not in keep), None)
            if victim is None:
                return
            self._drop(victim)

    def _drop(self, key: tuple[str, str]) -> None:
        dropped = [self._entries.pop(key)]
        for other, entry in list(self._entries.items()):  # an assembled model holds its parts: drop it too
            if key in entry.depends_on:
                dropped.append(self._entries.pop(other))
        for entry in dropped:
            try:
                self._evicted.append((weakref.ref(entry.value), entry.nbytes))
            except TypeError:  # a value that cannot be weakly referenced is assumed freed
                pass
        log.info("evicted %s", key)


_CACHE: ModelCache | None = None
_CACHE_LOCK = threading.Lock()


def get_cache() -> ModelCache:
    """The process-wide cache (one process serves every user)."""
    global _CACHE
    with _CACHE_LOCK:
        if _CACHE is None:
            _CACHE = ModelCache()
        return _CACHE
