"""Generations side by side: the LoRA gate's order and switches, streams that end when their request is gone, and
sampling that keeps its seed under concurrency."""

from __future__ import annotations

import torch
from test_llm import _prompt

from vlm_demo.llms import GenerationSettings


def test_lora_gate_lets_same_choice_run_together_and_makes_a_switch_wait():
    import threading

    from vlm_demo.llms.base import LoraGate

    switches = []
    gate = LoraGate(switches.append)
    inside_a, release_a, switched = threading.Event(), threading.Event(), threading.Event()

    def hold_a():
        with gate.using("a"):
            inside_a.set()
            release_a.wait(5)

    def want_none():
        with gate.using(None):
            switched.set()

    holder = threading.Thread(target=hold_a)
    holder.start()
    inside_a.wait(5)
    with gate.using("a"):  # same adapter: enters while the other call runs
        pass
    waiter = threading.Thread(target=want_none)
    waiter.start()
    assert not switched.wait(0.3)  # a switch waits for the running call
    release_a.set()
    assert switched.wait(5)
    holder.join()
    waiter.join()
    assert switches == ["a", None]


def _slow_llm(seconds_per_token: float = 0.02):
    """A tiny LLM that never ends an answer early and takes `seconds_per_token` a token."""
    import time

    from transformers import LlamaConfig, LlamaForCausalLM

    from tests.conftest import WORDS, tiny_tokenizer
    from vlm_demo.llms import LanguageModel

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(WORDS), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2,
                                         max_position_embeddings=1024, pad_token_id=0, bos_token_id=3))
    model.generation_config.eos_token_id = None
    model.register_forward_pre_hook(lambda *_: time.sleep(seconds_per_token))
    return LanguageModel("slow", model, tiny_tokenizer())


def _wait_until(condition, seconds: float) -> bool:
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def test_a_closed_stream_ends_its_generation_within_a_second_and_frees_its_slot():
    llm = _slow_llm()
    inputs = llm.splice([_prompt(llm)], torch.randn(1, 3, 32))
    stream = llm.stream(inputs, GenerationSettings(max_new_tokens=500))  # ~10 s if nobody stops it
    next(stream), next(stream)
    assert llm._lora_gate.running == 1
    stream.close()  # what Gradio does when a visitor cancels
    assert _wait_until(lambda: llm._lora_gate.running == 0, 1.0)
    assert not [t for t in __import__("threading").enumerate() if t.name == "generate" and t.is_alive()]


def test_a_stream_whose_request_is_gone_ends_within_a_second_although_never_closed():
    import threading

    llm = _slow_llm()
    inputs = llm.splice([_prompt(llm)], torch.randn(1, 3, 32))
    gone = threading.Event()
    stream = llm.stream(inputs, GenerationSettings(max_new_tokens=500), cancelled=gone.is_set)
    next(stream)
    gone.set()  # the browser disconnected: nobody reads the stream any more
    assert _wait_until(lambda: llm._lora_gate.running == 0, 1.0)
    del stream


def test_lora_gate_admits_in_arrival_order_so_a_switch_is_not_starved():
    import threading
    import time

    from vlm_demo.llms.base import LoraGate

    gate = LoraGate(lambda lora: None)
    order: list[str] = []
    release = threading.Event()

    def run(lora, label, hold):
        with gate.using(lora):
            order.append(label)
            if hold:
                release.wait(5)

    first = threading.Thread(target=run, args=("a", "first a", True))
    first.start()
    assert _wait_until(lambda: order == ["first a"], 2)
    switch = threading.Thread(target=run, args=(None, "no LoRA", False))
    switch.start()
    time.sleep(0.2)  # the switch is now waiting for the running "a"
    late = threading.Thread(target=run, args=("a", "later a", False))
    late.start()
    time.sleep(0.2)
    assert order == ["first a"]  # the later "a" does not overtake the waiting switch
    release.set()
    for thread in (first, switch, late):
        thread.join(5)
    assert order == ["first a", "no LoRA", "later a"]


def test_sampling_uses_its_own_generator_so_seeds_hold_under_concurrency(tiny_llm):
    from concurrent.futures import ThreadPoolExecutor

    inputs = tiny_llm.splice([_prompt(tiny_llm)], torch.randn(1, 3, 32))

    def sample(seed):
        return tiny_llm.generate(inputs, GenerationSettings(max_new_tokens=12, temperature=1.5, top_p=1.0,
                                                            seed=seed))[0]

    alone = {seed: sample(seed) for seed in range(6)}
    torch.manual_seed(123)
    state = torch.get_rng_state()
    with ThreadPoolExecutor(3) as pool:
        together = list(pool.map(sample, [seed for _ in range(3) for seed in range(6)]))
    assert together == [alone[seed] for _ in range(3) for seed in range(6)]
    assert torch.equal(torch.get_rng_state(), state)  # torch's global generator is left alone


def test_a_request_waiting_at_the_lora_gate_leaves_the_line_once_it_is_gone():
    import threading

    from vlm_demo.llms.base import LoraGate
    from vlm_demo.llms.generation import GenerationCancelled

    gate = LoraGate(lambda lora: None)
    holding, release, gone = threading.Event(), threading.Event(), threading.Event()
    outcome: list = []

    def hold():
        with gate.using("a"):
            holding.set()
            release.wait(5)

    def wait_then_leave():
        try:
            with gate.using(None, cancelled=gone.is_set):
                outcome.append("admitted")
        except GenerationCancelled:
            outcome.append("left")

    holder = threading.Thread(target=hold)
    holder.start()
    holding.wait(5)
    waiter = threading.Thread(target=wait_then_leave)
    waiter.start()
    gone.set()
    waiter.join(1.0)
    assert outcome == ["left"]
    release.set()
    holder.join(5)
    with gate.using(None):  # the line is empty again: the next request is admitted
        assert gate.running == 1
