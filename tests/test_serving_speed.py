"""Faster answers stay the same answers: a chat turn that reuses the cached conversation prefix answers byte for byte
what computing the whole conversation again answers, and the int8 LLM keeps LoRAs switchable by name."""

from __future__ import annotations

import pytest
import torch

from vlm_demo.llms import IMAGE_PLACEHOLDER, GenerationSettings
from vlm_demo.llms.prefix_cache import PrefixCache, shared_rows

QUESTIONS = ["describe this image", "what colour is the circle ?", "what is the square ?", "is this a red circle ?"]
GREEDY, SAMPLED = GenerationSettings(max_new_tokens=6), GenerationSettings(max_new_tokens=6, temperature=1.0, seed=3)


@pytest.fixture(scope="module")
def sharp_llm():
    """A tiny random Llama whose answers depend on the conversation (the shared tiny_llm's barely do), so a wrong key
    or value in the cache shows in the text."""
    from conftest import WORDS, tiny_tokenizer
    from transformers import LlamaConfig, LlamaForCausalLM

    from vlm_demo.llms import LanguageModel

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(WORDS), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, eos_token_id=1,
                         pad_token_id=0, bos_token_id=3, initializer_range=0.3)
    return LanguageModel("sharp-tiny-llama", LlamaForCausalLM(config), tiny_tokenizer())


def _turn_inputs(llm, image, history, question):
    messages = []
    for number, (user, answer) in enumerate(history + [(question, None)]):
        messages.append({"role": "user", "content": (f"{IMAGE_PLACEHOLDER}\n" if number == 0 else "") + user})
        if answer is not None:
            messages.append({"role": "assistant", "content": answer})
    return llm.splice([llm.chat_text(messages)], image)


def _chat(llm, image, questions, settings, reuse, lora=None):
    history = []
    for question in questions:
        inputs = _turn_inputs(llm, image, history, question)
        answer = "".join(llm.stream(inputs, settings, lora=lora, reuse_prefix=reuse)).strip()
        history.append((question, answer))
    return history


@pytest.mark.parametrize("settings", [GREEDY, SAMPLED], ids=["greedy", "sampled"])
def test_a_four_turn_chat_with_the_cached_prefix_answers_byte_for_byte_as_recomputing(sharp_llm, settings):
    sharp_llm.prefixes.clear()
    image = torch.randn(1, 5, 32)
    scratch = _chat(sharp_llm, image, QUESTIONS, settings, reuse=False)
    assert len({answer for _, answer in scratch}) > 1  # the answers depend on the conversation
    cached, reused, lengths = [], [], []
    for question in QUESTIONS:
        inputs = _turn_inputs(sharp_llm, image, cached, question)
        before = sharp_llm.prefixes.reused_rows
        cached.append((question, "".join(sharp_llm.stream(inputs, settings, reuse_prefix=True)).strip()))
        reused.append(sharp_llm.prefixes.reused_rows - before)
        lengths.append(inputs.inputs_embeds.shape[1])
    assert cached == scratch
    assert reused[0] == 0
    for turn in range(1, len(QUESTIONS)):  # at least the whole earlier prompt (this tokenizer's answers may not
        assert reused[turn] >= lengths[turn - 1]  # re-tokenize to the generated tokens)


def test_retry_undo_and_edit_reuse_only_the_shared_prefix_and_answer_as_recomputing(sharp_llm):
    sharp_llm.prefixes.clear()
    image = torch.randn(1, 5, 32)
    history = _chat(sharp_llm, image, QUESTIONS[:3], GREEDY, reuse=True)
    for earlier, question in [(history[:2], QUESTIONS[2]),  # retry the last turn
                              (history[:1], QUESTIONS[3]),  # undo one turn, ask something else
                              (history[:1], "what colour is the square ?"),  # edit the second message
                              ([], "the red square"),  # a new conversation about the same image
                              (history[:2], QUESTIONS[3])]:  # back on the first branch
        inputs = _turn_inputs(sharp_llm, image, earlier, question)
        for settings in (GREEDY, SAMPLED):
            again = "".join(sharp_llm.stream(inputs, settings, reuse_prefix=True))
            assert again == "".join(sharp_llm.stream(inputs, settings, reuse_prefix=False))


def test_a_different_image_or_lora_never_reuses_another_conversations_cache(tiny_llm):
    cache = PrefixCache()
    rows = torch.randn(10, 4)
    stored = _filled_cache(tiny_llm, rows.shape[0])
    cache.put("lora-a", rows, stored)
    other = rows.clone()
    other[0, 0] += 1e-6
    assert cache.take("lora-a", other) == (None, 0)  # differs from the first row on
    assert cache.take(None, rows) == (None, 0)  # same rows, another LoRA
    taken, length = cache.take("lora-a", torch.cat([rows[:7], torch.randn(3, 4)]))
    assert length == 7 and taken.get_seq_length() == 7 and len(cache) == 0


def test_the_whole_prompt_is_never_taken_from_the_cache_so_the_next_token_is_computed(tiny_llm):
    cache = PrefixCache()
    rows = torch.randn(6, 4)
    cache.put(None, rows, _filled_cache(tiny_llm, 6))
    taken, length = cache.take(None, rows)
    assert length == 5 and taken.get_seq_length() == 5


def test_the_prefix_cache_stays_within_its_bytes_dropping_the_least_recently_used(tiny_llm):
    one = _filled_cache(tiny_llm, 8)
    rows = [torch.randn(8, 4) for _ in range(5)]
    probe = PrefixCache()
    probe.put(None, rows[0], one)
    cache = PrefixCache(max_bytes=probe.nbytes * 3)
    for row in rows:
        cache.put(None, row, _filled_cache(tiny_llm, 8))
    assert len(cache) == 3 and cache.nbytes <= cache.max_bytes
    assert cache.take(None, rows[0]) == (None, 0) and cache.take(None, rows[4])[1] == 7
    small = PrefixCache(max_bytes=10)
    small.put(None, rows[0], _filled_cache(tiny_llm, 8))
    assert len(small) == 0


def test_shared_rows_counts_the_bitwise_equal_leading_rows():
    a = torch.arange(12.0).reshape(6, 2)
    b = a.clone()
    b[4, 1] = -1
    assert shared_rows(a, b) == 4 and shared_rows(a, a[:3]) == 3 and shared_rows(a[:0], a) == 0


def _filled_cache(llm, length):
    from transformers import DynamicCache

    cache = DynamicCache(config=llm.model.config)
    with torch.inference_mode():
        llm.model(input_ids=torch.randint(4, 20, (1, length)), past_key_values=cache, use_cache=True)
    return cache


@pytest.fixture(scope="module")
def smollm2():
    from vlm_demo.llms import load_llm

    return load_llm("smollm2-135m-instruct")


def test_the_real_smollm2_answers_a_three_turn_chat_identically_with_the_cached_prefix(smollm2):
    torch.manual_seed(0)
    image = torch.randn(1, 49, smollm2.hidden_size) * 0.05
    settings = GenerationSettings(max_new_tokens=12)
    questions = ["Describe this image.", "What colour is it?", "Say it in one word."]
    scratch = _chat(smollm2, image, questions, settings, reuse=False)
    smollm2.prefixes.clear()
    history, length = [], 0
    for question in questions:
        inputs = _turn_inputs(smollm2, image, history, question)
        before = smollm2.prefixes.reused_rows
        history.append((question, "".join(smollm2.stream(inputs, settings, reuse_prefix=True)).strip()))
        if len(history) > 1:  # the earlier prompt and the earlier answer's tokens (BPE re-tokenizes them alike)
            assert smollm2.prefixes.reused_rows - before >= length + len(smollm2._ids(history[-2][1])) - 1
        length = inputs.inputs_embeds.shape[1]
    assert history == scratch


def test_int8_weights_keep_the_llm_close_and_loras_switchable_by_name(tiny_llm, tmp_path):
    from test_llm import _reloaded_with_an_answer, _saved_lora

    from vlm_demo.llms.loading import load_causal_lm
    from vlm_demo.llms.quantize import Int8Linear, is_int8, quantize_int8

    fp32, inputs, settings, _ = _reloaded_with_an_answer(tiny_llm, tmp_path)
    lora = _saved_lora(tmp_path, 1)
    int8 = load_causal_lm("tiny", tmp_path)
    quantize_int8(int8.model)
    assert is_int8(int8.model) and not is_int8(fp32.model)
    assert isinstance(int8.model.lm_head, Int8Linear)
    assert int8.model.get_input_embeddings().weight.dtype == torch.float32
    ids = torch.tensor([[3, 4, 7, 8, 9, 19]])
    with torch.inference_mode():
        reference, quantised = fp32.model(ids).logits, int8.model(ids).logits
    assert not torch.equal(reference, quantised)
    assert (quantised - reference).norm() / reference.norm() < 0.05
    for llm in (fp32, int8):
        llm.attach_lora("first", lora)
    with torch.inference_mode():
        base = int8.model(ids).logits
        with int8._lora_gate.using("first"):
            tuned = int8.model(ids).logits
        with fp32._lora_gate.using("first"):
            tuned_fp32 = fp32.model(ids).logits
    assert (tuned - base).abs().max() > 0.1  # the LoRA acts on the int8 base
    assert (tuned - tuned_fp32).norm() / tuned_fp32.norm() < 0.05
    assert type(int8.model.model.layers[0].self_attn.q_proj.base_layer) is Int8Linear
    assert int8.model.model.layers[0].self_attn.q_proj.lora_A["first"].weight.dtype == torch.float32


def test_the_llm_precision_resolves_from_auto_the_environment_or_the_choice(monkeypatch):
    from vlm_demo.llms.quantize import CPU_DEFAULT, PRECISION_ENV, resolve_llm_precision

    monkeypatch.delenv(PRECISION_ENV, raising=False)
    assert resolve_llm_precision("auto", "cpu") == CPU_DEFAULT and resolve_llm_precision(None) == CPU_DEFAULT
    assert resolve_llm_precision("bf16", "cpu") == "bf16"
    monkeypatch.setenv(PRECISION_ENV, "int8")
    assert resolve_llm_precision("auto", "cpu") == "int8" and resolve_llm_precision("fp32") == "fp32"
    with pytest.raises(ValueError, match="int4"):
        resolve_llm_precision("int4")


def test_the_cli_and_train_eval_take_a_precision_and_eval_results_say_which(tmp_path):
    from train.config import ConfigError, load_config
    from train.evaluate import results_name
    from vlm_demo.cli import build_parser

    assert build_parser().parse_args(["caption", "a.png", "--precision", "int8"]).precision == "int8"
    assert build_parser().parse_args(["chat", "a.png"]).precision == "auto"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["caption", "a.png", "--precision", "int4"])
    assert results_name(load_config(None, [])) == "eval"
    assert results_name(load_config(None, ["eval.llm_precision=int8"])) == "eval-int8"
    assert results_name(load_config(None, ["eval.llm_precision=int8", "eval.image_tokens=none"])) == "eval-none-int8"
    with pytest.raises(ConfigError):
        load_config(None, ["eval.llm_precision=int4"])


def test_a_visitors_choice_of_llm_weights_reaches_their_chat_and_loads_a_separate_llm(monkeypatch):
    from types import SimpleNamespace

    import gradio as gr
    from gradio.context import LocalContext
    from torch import nn

    from vlm_demo import models_cache
    from vlm_demo.combos import COMBOS
    from vlm_demo.ui import common

    monkeypatch.delenv("VLM_DEMO_LLM_PRECISION", raising=False)
    loaded = []
    monkeypatch.setattr(models_cache, "build_encoder", lambda name: nn.Linear(2, 2))
    monkeypatch.setattr(models_cache, "load_llm", lambda name, **kw: loaded.append(kw["precision"]) or nn.Linear(2, 2))
    monkeypatch.setattr(models_cache.VisionLanguageModel, "from_combo",
                        classmethod(lambda cls, combo, llm=None, encoder=None: SimpleNamespace(adapter=llm)))
    token = LocalContext.request.set(SimpleNamespace(session_hash="visitor-a"))
    try:
        assert common.session_precision() == "auto"
        common.remember_precision("int8")
        assert common.session_precision() == "int8"
        with pytest.raises(gr.Error):
            common.remember_precision("int4")
        LocalContext.request.set(SimpleNamespace(session_hash="visitor-b"))
        assert common.session_precision() == "auto"
    finally:
        LocalContext.request.reset(token)
    cache = models_cache.ModelCache(budget_mb=1000)
    fp32, int8 = cache.vlm(COMBOS["default"]), cache.vlm(COMBOS["default"], precision="int8")
    assert fp32.adapter is not int8.adapter and loaded == ["fp32", "int8"]
    assert cache.vlm(COMBOS["default"], precision="int8") is int8 and cache.has("llm", "smollm2-135m-instruct@int8")
