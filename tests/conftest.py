"""Shared fixtures: tiny random LLMs built from configs (nothing is downloaded) and sample images."""

from __future__ import annotations

import os

import pytest
import torch
from PIL import Image
from tokenizers import Regex, Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from vlm_demo.encoders.base import EncoderOutput
from vlm_demo.llms import LanguageModel

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def fresh_hub_snapshots():
    """Each test sees its own (faked) hub: the process-wide memo of fetched checkpoints starts empty."""
    from vlm_demo.checkpoint import _snapshot

    _snapshot.cache_clear()

WORDS = ["<pad>", "<|im_end|>", "<unk>", "<|im_start|>", "user", "assistant", "system", "describe", "this",
         "image", "a", "red", "circle", "blue", "square", "the", "is", "what", "colour", "\n", ".", "?", ":"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {word: index for index, word in enumerate(WORDS)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"<\|im_start\|>|<\|im_end\|>|\w+|[^\w\s]|\n"),
                                                 behavior="removed", invert=True)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<pad>",
                                        unk_token="<unk>")
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


@pytest.fixture(scope="session")
def tiny_llm() -> LanguageModel:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(WORDS), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         eos_token_id=1, pad_token_id=0, bos_token_id=3)
    return LanguageModel("tiny-llama", LlamaForCausalLM(config), tiny_tokenizer())


@pytest.fixture(scope="session")
def tiny_llm_dir(tmp_path_factory, tiny_llm):
    """The tiny LLM saved as a folder, for code that loads an LLM by name (train_stage, QLoRA)."""
    folder = tmp_path_factory.mktemp("tiny-llm")
    tiny_llm.model.save_pretrained(folder)
    tiny_llm.tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def study_root(tmp_path_factory):
    """One folder for the --tiny study's runs in this session, so claims in different test files share them."""
    return tmp_path_factory.mktemp("study")


def fake_features(batch: int = 2, tokens: int = 49, dim: int = 64, stage_dims=(8, 16, 32, 64)) -> EncoderOutput:
    sizes = [28, 14, 7, 7]
    stages = [torch.randn(batch, c, s, s) for c, s in zip(stage_dims, sizes)]
    return EncoderOutput(torch.randn(batch, tokens, dim), torch.randn(batch, dim), stages)


@pytest.fixture(scope="session")
def photo() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.chelsea())
