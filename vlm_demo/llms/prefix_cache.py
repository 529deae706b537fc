"""Key/value caches of conversations answered before, so a chat turn computes only what follows the longest prefix it
shares with one of them (system prompt, image tokens, earlier turns) instead of the whole conversation again.

An entry is found by comparing the new prompt's input embeddings row by row with the sequence a stored cache holds:
the embeddings carry the prompt's tokens and the adapter's image tokens, so two prompts that share a prefix of rows
share its keys and values (under the same weights and LoRA). Retry, undo and edit need no hook: their prompts simply
share a shorter prefix. A cache is taken out while a generation extends it and put back after, so two generations
never write to one cache.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

DEFAULT_PREFIX_CACHE_MB = 256  # about 5,500 tokens of SmolLM2-135M keys and values in fp32
MIN_SHARED_ROWS = 1  # a shared prefix shorter than this is not worth a lookup


@dataclass(eq=False)  # entries are removed by identity
class _Entry:
    lora: str | None
    embeds: torch.Tensor  # [L, H]: the rows whose keys and values `cache` holds
    cache: DynamicCache
    nbytes: int


def cache_bytes(cache: DynamicCache) -> int:
    """Bytes of the keys and values a cache holds."""
    return sum(t.numel() * t.element_size() for layer in cache.layers for t in (layer.keys, layer.values)
               if isinstance(t, torch.Tensor))


def croppable(cache: object) -> bool:
    """Only a plain dynamic cache (every layer full attention) can be cut back to a prefix exactly."""
    return isinstance(cache, DynamicCache) and all(type(layer) is DynamicLayer for layer in cache.layers)


def shared_rows(stored: torch.Tensor, new: torch.Tensor) -> int:
    """How many leading rows of two [L, H] tensors are bitwise equal."""
    length = min(stored.shape[0], new.shape[0])
    if length == 0:
        return 0
    same = (stored[:length] == new[:length]).all(dim=-1)
    differs = (~same).nonzero()
    return int(differs[0, 0]) if len(differs) else length


class PrefixCache:
    """Least recently used conversation caches of one LLM, at most `max_bytes` of keys, values and embeddings."""

    def __init__(self, max_bytes: int = DEFAULT_PREFIX_CACHE_MB * 2**20) -> None:
        self.max_bytes = max_bytes
        self._entries: list[_Entry] = []  # least recently used first
        self._lock = threading.Lock()
        self.reused_rows = 0  # rows whose keys and values were reused instead of computed, over this cache's life

    @property
    def nbytes(self) -> int:
        with self._lock:
            return sum(entry.nbytes for entry in self._entries)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def take(self, lora: str | None, embeds: torch.Tensor) -> tuple[DynamicCache | None, int]:
        """Remove the cache sharing the longest prefix with `embeds` [L, H] under `lora`, cut back to that prefix (at
        most L - 1 rows, so the last position is computed afresh), and return it with its length; (None, 0) when no
        entry shares a prefix."""
        with self._lock:
            best, rows = None, 0
            for entry in self._entries:
                if entry.lora == lora and entry.embeds.shape[-1] == embeds.shape[-1]:
                    shared = shared_rows(entry.embeds, embeds)
                    if shared > rows:
                        best, rows = entry, shared
            rows = min(rows, embeds.shape[0] - 1)
            if best is None or rows < MIN_SHARED_ROWS:
                return None, 0
            self._entries.remove(best)
            self.reused_rows += rows
        surplus = best.cache.get_seq_length() - rows
        if surplus > 0:
            best.cache.crop(-surplus)
        return best.cache, rows

    def put(self, lora: str | None, embeds: torch.Tensor, cache: DynamicCache) -> None:
        """Keep `cache`, whose keys and values are those of the first rows of `embeds` [L, H]; the least recently
        used entries leave while the total passes `max_bytes`."""
        length = cache.get_seq_length()
        if not croppable(cache) or length == 0 or embeds.shape[0] < length:
            return
        rows = embeds[:length].detach().clone()
        entry = _Entry(lora, rows, cache, cache_bytes(cache) + rows.numel() * rows.element_size())
        if entry.nbytes > self.max_bytes:
            return
        with self._lock:
            self._entries.append(entry)
            while sum(item.nbytes for item in self._entries) > self.max_bytes:
                self._entries.pop(0)
