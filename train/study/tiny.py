"""The `--tiny` budget: a tiny random Llama whose word-level vocabulary covers the shapes prompts and captions
(built here, nothing is downloaded), a handful of images and steps. It checks that every claim runs end to end;
its numbers say nothing about the papers."""

from __future__ import annotations

import re
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from train.data.shapes import shapes_samples
from vlm_demo.pipeline import DEFAULT_PROMPT

SPECIAL = ["<pad>", "<|im_end|>", "<unk>", "<|im_start|>", "user", "assistant", "system", "\n"]
PIECES = r"<\|im_start\|>|<\|im_end\|>|\w+|[^\w\s]|\n"
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def tiny_llm_folder(folder: Path, width: int = 32, layers: int = 2) -> Path:
    """Save (once) a seeded random Llama and a word-level tokenizer over the shapes data's words to `folder`."""
    folder = Path(folder)
    if (folder / "config.json").is_file():
        return folder
    texts = [DEFAULT_PROMPT]
    for split in ("train", "val", "test"):
        for sample in shapes_samples(split, 60, vqa_per_image=2):
            texts.extend([sample.prompt, sample.target, *sample.references])
    words = sorted({piece for text in texts for piece in re.findall(PIECES, text)} - set(SPECIAL))
    vocab = {word: index for index, word in enumerate(SPECIAL + words)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(PIECES), behavior="removed", invert=True)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<pad>",
                                        unk_token="<unk>")
    tokenizer.chat_template = CHAT_TEMPLATE
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=width, intermediate_size=2 * width,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, eos_token_id=1, pad_token_id=0, bos_token_id=3)
    folder.mkdir(parents=True, exist_ok=True)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
