"""Splicing image tokens into the chat prompt, generation (greedy, sampling, streamed, batched), hub-style loading."""

from __future__ import annotations

import pytest
import torch

from vlm_demo.llms import IMAGE_PLACEHOLDER, GenerationSettings
from vlm_demo.llms.loading import load_causal_lm


def _prompt(llm, question="describe this image"):
    return llm.chat_text([{"role": "user", "content": f"{IMAGE_PLACEHOLDER}\n{question}"}])


def test_image_tokens_land_exactly_where_the_placeholder_was(tiny_llm):
    prompt = _prompt(tiny_llm)
    before, after = prompt.split(IMAGE_PLACEHOLDER)
    image = torch.randn(1, 5, 32)
    inputs = tiny_llm.splice([prompt], image)
    embed = tiny_llm.model.get_input_embeddings()
    before_ids = tiny_llm.tokenizer(before, add_special_tokens=False)["input_ids"]
    after_ids = tiny_llm.tokenizer(after, add_special_tokens=False)["input_ids"]
    start, end = inputs.image_spans[0][0]
    assert (start, end) == (len(before_ids), len(before_ids) + 5)
    row = inputs.inputs_embeds[0]
    assert torch.equal(row[start:end], image[0])
    assert torch.equal(row[:start], embed(torch.tensor(before_ids)))
    assert torch.equal(row[end:], embed(torch.tensor(after_ids)))


def test_left_padding_shifts_image_spans_and_masks_padding(tiny_llm):
    prompts = [_prompt(tiny_llm), _prompt(tiny_llm, "what colour is the red circle ?")]
    inputs = tiny_llm.splice(prompts, torch.randn(2, 3, 32))
    lengths = inputs.attention_mask.sum(dim=1)
    assert lengths[1] > lengths[0]
    pad = int(lengths[1] - lengths[0])
    assert inputs.attention_mask[0, :pad].sum() == 0
    assert inputs.image_spans[0][0][0] == inputs.image_spans[1][0][0] + pad
    assert inputs.position_ids[0, pad] == 0


def test_targets_are_the_only_labelled_tokens(tiny_llm):
    inputs = tiny_llm.splice([_prompt(tiny_llm)], torch.randn(1, 4, 32), targets=["a red circle ."],
                             padding_side="right")
    labelled = inputs.labels[0][inputs.labels[0] != -100].tolist()
    expected = tiny_llm.tokenizer("a red circle .<|im_end|>", add_special_tokens=False)["input_ids"]
    assert labelled == expected


def test_several_images_land_at_their_turns_in_order(tiny_llm):
    from vlm_demo.pipeline import build_prompt

    prompt = build_prompt(tiny_llm, "what colour is the circle ?", [("describe this image", "a red circle .")],
                          images_per_turn=[1, 1])
    assert prompt.count(IMAGE_PLACEHOLDER) == 2
    assert prompt.index(IMAGE_PLACEHOLDER, prompt.index("a red circle")) > prompt.index("a red circle")
    images = torch.randn(2, 3, 32)
    inputs = tiny_llm.splice([prompt], [images])
    (a, b), (c, d) = inputs.image_spans[0]
    assert b <= c and torch.equal(inputs.inputs_embeds[0, a:b], images[0])
    assert torch.equal(inputs.inputs_embeds[0, c:d], images[1])
    with pytest.raises(ValueError, match="2 image placeholders, expected 1"):
        tiny_llm.splice([prompt], [images[:1]])


def test_how_many_images_a_conversation_takes_follows_the_token_budget():
    from vlm_demo.pipeline import IMAGE_TOKEN_BUDGET, MAX_IMAGES, images_allowed

    assert images_allowed(1) == images_allowed(49) == MAX_IMAGES
    assert images_allowed(196) == IMAGE_TOKEN_BUDGET // 196 == 2
    assert images_allowed(256) == images_allowed(10_000) == 1


def test_a_cancelled_generation_stops_between_decoder_layers_not_after_the_token(tiny_llm):
    from vlm_demo.llms.generation import GenerationCancelled

    first, second = tiny_llm.model.model.layers[:2]
    stopped, second_ran = [], []
    hooks = [first.register_forward_pre_hook(lambda module, args: stopped.append(True)),  # Stop during token one
             second.register_forward_pre_hook(lambda module, args: second_ran.append(True))]
    try:
        with pytest.raises(GenerationCancelled):
            tiny_llm.generate(tiny_llm.splice([_prompt(tiny_llm)], torch.randn(1, 3, 32)),
                              GenerationSettings(max_new_tokens=5), cancelled=lambda: bool(stopped))
    finally:
        for hook in hooks:
            hook.remove()
    assert stopped and not second_ran
    assert tiny_llm.generate(tiny_llm.splice([_prompt(tiny_llm)], torch.randn(1, 3, 32)),
                             GenerationSettings(max_new_tokens=2))  # later generations are not affected


def test_wrong_number_of_placeholders_is_an_error(tiny_llm):
    import pytest

    with pytest.raises(ValueError, match="image placeholders"):
        tiny_llm.splice(["no placeholder here"], torch.randn(1, 2, 32))


def test_greedy_generation_is_deterministic_and_batched_matches_single(tiny_llm):
    settings = GenerationSettings(max_new_tokens=6, repetition_penalty=1.0)
    prompts = [_prompt(tiny_llm), _prompt(tiny_llm, "what colour is the red circle ?")]
    images = torch.randn(2, 3, 32)
    batched = tiny_llm.generate(tiny_llm.splice(prompts, images), settings)
    singles = [tiny_llm.generate(tiny_llm.splice([p], images[i:i + 1]), settings)[0] for i, p in enumerate(prompts)]
    assert batched == singles
    assert batched == tiny_llm.generate(tiny_llm.splice(prompts, images), settings)


def test_sampling_depends_on_the_seed(tiny_llm):
    inputs = tiny_llm.splice([_prompt(tiny_llm)], torch.randn(1, 3, 32))
    texts = {seed: tiny_llm.generate(inputs, GenerationSettings(max_new_tokens=12, temperature=1.5, top_p=1.0,
                                                                seed=seed))[0] for seed in range(4)}
    again = tiny_llm.generate(inputs, GenerationSettings(max_new_tokens=12, temperature=1.5, top_p=1.0, seed=0))[0]
    assert again == texts[0]
    assert len(set(texts.values())) > 1


def test_streaming_yields_the_same_text_as_generate(tiny_llm):
    inputs = tiny_llm.splice([_prompt(tiny_llm)], torch.randn(1, 3, 32))
    settings = GenerationSettings(max_new_tokens=8)
    assert "".join(tiny_llm.stream(inputs, settings)).strip() == tiny_llm.generate(inputs, settings)[0]


def test_hub_style_loading_from_a_saved_folder(tiny_llm, tmp_path):
    tiny_llm.model.save_pretrained(tmp_path)
    tiny_llm.tokenizer.save_pretrained(tmp_path)
    loaded = load_causal_lm("tiny-from-folder", tmp_path)
    assert loaded.hidden_size == 32 and loaded.name == "tiny-from-folder"
    ids = torch.tensor([[3, 4, 19]])
    assert torch.allclose(loaded.model(ids).logits, tiny_llm.model(ids).logits, atol=1e-5)


def _saved_lora(folder, seed):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    peft_model = get_peft_model(load_causal_lm("copy", folder).model,
                                LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    for name, parameter in peft_model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(parameter)  # LoRA starts as a no-op; make it change the model
    peft_model.save_pretrained(folder / f"lora{seed}")
    return str(folder / f"lora{seed}")


def _reloaded_with_an_answer(tiny_llm, folder):
    """The tiny LLM saved and loaded from `folder` (so LoRAs can be saved against it), a spliced prompt, settings,
    and its answer without any LoRA."""
    tiny_llm.model.save_pretrained(folder)
    tiny_llm.tokenizer.save_pretrained(folder)
    llm = load_causal_lm("tiny", folder)
    inputs = llm.splice([_prompt(llm)], torch.randn(1, 3, 32))
    settings = GenerationSettings(max_new_tokens=8)
    return llm, inputs, settings, llm.generate(inputs, settings)


def test_attached_lora_changes_answers_only_in_calls_that_name_it(tiny_llm, tmp_path):
    llm, inputs, settings, before = _reloaded_with_an_answer(tiny_llm, tmp_path)
    llm.attach_lora("first", _saved_lora(tmp_path, 1))
    llm.attach_lora("second", _saved_lora(tmp_path, 2))
    llm.attach_lora("first", str(tmp_path / "lora1"))  # attaching again is a no-op
    assert llm.loras == ["first", "second"]
    assert not llm.model.training
    first, second = llm.generate(inputs, settings, lora="first"), llm.generate(inputs, settings, lora="second")
    assert first != before and second != first
    assert llm.generate(inputs, settings) == before
    assert "".join(llm.stream(inputs, settings, lora="first")).strip() == first[0]
    assert llm.generate(inputs, settings, lora="first") == first


def test_a_lora_that_fails_to_attach_leaves_no_half_attached_layers(tiny_llm, tmp_path):
    import pytest

    llm, inputs, settings, before = _reloaded_with_an_answer(tiny_llm, tmp_path)
    good = _saved_lora(tmp_path, 1)
    bad = tmp_path / "damaged"
    bad.mkdir()
    (bad / "adapter_config.json").write_bytes((tmp_path / "lora1" / "adapter_config.json").read_bytes())
    (bad / "adapter_model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match="could not be attached"):
        llm.attach_lora("lora", str(bad))
    assert llm.loras == []
    assert not [name for name, _ in llm.model.named_modules() if name.endswith(".lora")]
    assert llm.generate(inputs, settings) == before
    llm.attach_lora("lora", good)  # the same name attaches for real afterwards
    assert llm.loras == ["lora"] and llm.generate(inputs, settings, lora="lora") != before
    assert llm.generate(inputs, settings) == before


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
