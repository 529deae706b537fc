"""The app's model cache with stand-in loaders: sharing, instant reuse, the memory budget, one load at a time."""

from __future__ import annotations

import threading
import time

import pytest
from torch import nn

from vlm_demo import models_cache
from vlm_demo.combos import COMBOS
from vlm_demo.models_cache import LoadError, ModelCache


class FakeVLM:
    def __init__(self, combo, llm, encoder):
        self.combo, self.llm, self.encoder = combo, llm, encoder
        self.adapter = nn.Linear(10, 10)

    @classmethod
    def from_combo(cls, combo, llm=None, encoder=None):
        return cls(combo, llm, encoder)


@pytest.fixture
def loads(monkeypatch):
    """Counts of loads per part; encoders are 4 MB, LLMs 40 MB."""
    counts: dict[str, int] = {}

    def count(name):
        counts[name] = counts.get(name, 0) + 1
        time.sleep(0.05)

    def encoder(name):
        count(name)
        return nn.Linear(1000, 1000)  # ~4 MB

    def llm(name, **_):
        count(name)
        return nn.Linear(10_000, 1000)  # ~40 MB

    monkeypatch.setattr(models_cache, "build_encoder", encoder)
    monkeypatch.setattr(models_cache, "load_llm", llm)
    monkeypatch.setattr(models_cache, "VisionLanguageModel", FakeVLM)
    return counts


def test_parts_are_shared_and_a_loaded_combination_comes_back_instantly(loads):
    cache = ModelCache(budget_mb=1000)
    reports = []
    first = cache.vlm(COMBOS["mlp"], lambda fraction, text: reports.append((fraction, text)))
    second = cache.vlm(COMBOS["linear"])
    assert second.llm is first.llm and second.encoder is first.encoder
    assert loads == {"efficientnet-lite0": 1, "smollm2-135m-instruct": 1}
    start = time.perf_counter()
    assert cache.vlm(COMBOS["mlp"]) is first
    assert time.perf_counter() - start < 0.05
    assert [text for _, text in reports][:2] == ["Loading encoder efficientnet-lite0\u2026",
                                                  "Loading LLM smollm2-135m-instruct\u2026"]
    assert reports[-1] == (1.0, "Ready")
    kinds = [entry["kind"] for entry in cache.loaded()]
    assert kinds.count("vlm") == 2 and kinds.count("llm") == 1


def test_least_recently_used_parts_leave_when_over_budget(loads):
    cache = ModelCache(budget_mb=60)  # room for one 40 MB LLM, not two
    cache.vlm(COMBOS["mlp"])
    other = COMBOS["mlp"].__class__("hub", "efficientnet-lite0", "mlp", "someone/other-llm")
    cache.vlm(other)
    names = {entry["name"] for entry in cache.loaded()}
    assert "smollm2-135m-instruct" not in names and "someone/other-llm" in names
    assert not cache.is_loaded(COMBOS["mlp"])  # dropped with its LLM
    assert cache.memory_bytes() <= 60 * 2**20


def test_an_evicted_part_still_in_use_counts_against_the_budget_until_it_is_freed(loads):
    cache = ModelCache(budget_mb=100)  # room for two 40 MB LLMs
    combo = COMBOS["mlp"].__class__
    in_flight = cache.vlm(combo("a", "efficientnet-lite0", "mlp", "someone/llm-a"))  # a request still holds it
    cache.vlm(combo("b", "efficientnet-lite0", "mlp", "someone/llm-b"))
    cache._drop(("llm", "someone/llm-a"))  # evicted while the request runs: its 40 MB are still allocated
    assert cache.memory_bytes() > 80 * 2**20
    cache.vlm(combo("c", "efficientnet-lite0", "mlp", "someone/llm-c"))  # so loading a third must evict llm-b
    names = {entry["name"] for entry in cache.loaded()}
    assert "someone/llm-b" not in names and "someone/llm-c" in names
    del in_flight  # the request ends: its parts are freed and no longer counted
    assert cache.memory_bytes() < 50 * 2**20


def test_concurrent_requests_load_a_part_once(loads):
    cache = ModelCache(budget_mb=1000)
    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.vlm(COMBOS["mlp"]))) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(result) for result in results}) == 1
    assert loads == {"efficientnet-lite0": 1, "smollm2-135m-instruct": 1}


def test_a_failed_load_is_one_readable_line(monkeypatch):
    def broken(name):
        raise OSError("We couldn't connect to the hub.\nlong details")

    monkeypatch.setattr(models_cache, "build_encoder", broken)
    with pytest.raises(LoadError, match=r"^Could not load the encoder 'efficientnet-lite0': We couldn't connect"):
        ModelCache().vlm(COMBOS["mlp"])
