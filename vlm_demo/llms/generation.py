"""How answers are generated: settings and their ranges, sampling seeded per request, stopping when the request is
gone, and the first-come-first-served gate that switches LoRA adapters between generations."""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from transformers import (
    LogitsProcessor,
    LogitsProcessorList,
    StoppingCriteria,
    StoppingCriteriaList,
    TemperatureLogitsWarper,
    TopPLogitsWarper,
)

MIN_TEMPERATURE = 0.01  # below it, dividing the logits overflows; 0 itself means greedy
MAX_SEED = 2**63 - 1  # torch.Generator's range
Cancelled = Callable[[], bool]  # True once nobody waits for the answer any more


class GenerationCancelled(RuntimeError):
    """The request went away before or while its answer was generated."""


@dataclass
class GenerationSettings:
    """How answers are generated. These defaults are the only ones: the CLI, the app and the API start from them."""

    max_new_tokens: int = 48
    temperature: float = 0.0  # 0 means greedy
    top_p: float = 0.9
    seed: int | None = 0
    repetition_penalty: float = 1.1

    def check(self, most_new_tokens: int | None = None) -> GenerationSettings:
        """These settings, or a ValueError saying which one is out of range."""
        if self.max_new_tokens < 1 or (most_new_tokens and self.max_new_tokens > most_new_tokens):
            upper = f" and {most_new_tokens}" if most_new_tokens else ""
            raise ValueError(f"max new tokens must be {'between 1' + upper if upper else 'at least 1'}, "
                             f"not {self.max_new_tokens}")
        if not (self.temperature == 0.0 or MIN_TEMPERATURE <= self.temperature <= 2.0):
            raise ValueError(f"temperature must be 0 (greedy) or from {MIN_TEMPERATURE} to 2, not {self.temperature:g}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top-p must be in (0, 1], not {self.top_p}")
        if self.seed is not None and not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"the seed must be a whole number from 0 to {MAX_SEED}, not {self.seed}")
        return self

    def generate_kwargs(self, cancelled: Cancelled | None = None) -> dict:
        """Keyword arguments for `model.generate`, with a random generator of this call's own when sampling (so
        concurrent requests never share torch's global one) and a stop for when `cancelled()` becomes true."""
        kwargs: dict = {"max_new_tokens": self.max_new_tokens, "do_sample": False,
                        "repetition_penalty": self.repetition_penalty, "temperature": None, "top_p": None,
                        "top_k": None}
        if self.temperature > 0:
            kwargs["logits_processor"] = LogitsProcessorList([SeededSampling(self.temperature, self.top_p,
                                                                             self.seed)])
        if cancelled is not None:
            kwargs["stopping_criteria"] = StoppingCriteriaList([StopWhen(cancelled)])
        return kwargs


class SeededSampling(LogitsProcessor):
    """Temperature and top-p sampling drawn from a private torch.Generator; the pick is returned as the only finite
    score, so greedy decoding keeps it. Same distribution as transformers' own sampling."""

    def __init__(self, temperature: float, top_p: float, seed: int | None) -> None:
        self.warpers = [TemperatureLogitsWarper(temperature), TopPLogitsWarper(top_p)]
        self.generator = torch.Generator()
        self.generator.manual_seed(seed if seed is not None else int.from_bytes(os.urandom(8), "little") >> 1)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        for warper in self.warpers:
            scores = warper(input_ids, scores)
        probs = scores.float().softmax(dim=-1).cpu()
        picks = torch.multinomial(probs, num_samples=1, generator=self.generator).to(scores.device)
        chosen = torch.full_like(scores, float("-inf"))
        return chosen.scatter_(1, picks, 0.0)


class StopWhen(StoppingCriteria):
    """Ends every row once `cancelled()` is true (checked after each new token)."""

    def __init__(self, cancelled: Cancelled) -> None:
        self.cancelled = cancelled

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: object) -> torch.BoolTensor:
        return torch.full((input_ids.shape[0],), bool(self.cancelled()), dtype=torch.bool, device=input_ids.device)


_current = threading.local()  # the stop check of the generation running in this thread


def _stop_between_layers(module: torch.nn.Module, args: object) -> None:
    check = getattr(_current, "cancelled", None)
    if check is not None and check():
        raise GenerationCancelled("the request went away during a token")


def stop_between_layers(model: torch.nn.Module) -> None:
    """Let a generation stop between two decoder layers, not only between tokens: on a busy CPU one token can take
    seconds. Generations opt in with `interruptible`; others are not affected."""
    layers = [layer for name, module in model.named_modules() if isinstance(module, torch.nn.ModuleList)
              and name.rsplit(".", 1)[-1] in ("layers", "h", "blocks") for layer in module]
    for layer in layers or [model.get_input_embeddings()]:
        layer.register_forward_pre_hook(_stop_between_layers)


@contextmanager
def interruptible(cancelled: Cancelled | None) -> Iterator[None]:
    """Within this block, this thread's forward passes end with GenerationCancelled once `cancelled()` is true."""
    previous = getattr(_current, "cancelled", None)
    _current.cancelled = cancelled
    try:
        yield
    finally:
        _current.cancelled = previous


class LoraGate:
    """Generations that want the active LoRA adapter (or none) run together; one that wants another waits for them
    to end. Admission is first come, first served: nobody joins ahead of an earlier request that is waiting."""

    def __init__(self, activate: Callable[[str | None], None]) -> None:
        self._activate = activate
        self._condition = threading.Condition()
        self._active: str | None = None
        self._running = 0
        self._queue: deque[int] = deque()
        self._tickets = 0

    @property
    def running(self) -> int:
        """Generations inside the gate now."""
        with self._condition:
            return self._running

    def _admit(self, ready: Callable[[], bool], cancelled: Cancelled | None) -> None:
        """Wait (holding the condition) until this caller is first in line and `ready()`; leave the line on cancel."""
        ticket = self._tickets
        self._tickets += 1
        self._queue.append(ticket)
        try:
            while not (self._queue[0] == ticket and ready()):
                if cancelled is not None and cancelled():
                    raise GenerationCancelled("the request went away while waiting for the model")
                self._condition.wait(timeout=0.1 if cancelled is not None else None)
        finally:
            self._queue.remove(ticket)
            self._condition.notify_all()  # the next in line may be admitted too

    @contextmanager
    def using(self, lora: str | None, cancelled: Cancelled | None = None) -> Iterator[None]:
        with self._condition:
            self._admit(lambda: self._running == 0 or self._active == lora, cancelled)
            if self._active != lora:
                self._activate(lora)
                self._active = lora
            self._running += 1
        try:
            yield
        finally:
            with self._condition:
                self._running -= 1
                self._condition.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """No generation runs inside; the previous LoRA choice is re-applied after."""
        with self._condition:
            self._admit(lambda: self._running == 0, None)
            try:
                yield
            finally:
                self._activate(self._active)
