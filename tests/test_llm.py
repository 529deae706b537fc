"""Splicing image tokens into the chat prompt, generation (greedy, sampling, streamed, batched), hub-style loading and
attaching LoRAs (generations side by side: tests/test_llm_concurrency.py)."""

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
