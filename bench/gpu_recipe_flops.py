"""FLOPs of one caption-stage sample and of one epoch for the GPU recipes, counted by torch's FlopCounterMode on
meta tensors (the real architectures from their configs; nothing is downloaded or computed), and the time per
epoch they imply on common GPUs. Run: python bench/gpu_recipe_flops.py"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import (
    CLIPVisionConfig,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    SiglipVisionConfig,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from vlm_demo.encoders.hf import model_class  # noqa: E402

FLICKR8K_TRAIN = (6000, 5)  # images, captions each: one sample per caption
CAPTION_TOKENS = 15  # a Flickr8k caption (~12 words) and the end token
AFTER_IMAGE = 12  # "\nDescribe this image.<|im_end|>\n<|im_start|>assistant\n"
GPUS = {"A100 (bf16)": 312e12, "H100 SXM (bf16)": 989e12, "L4 (bf16)": 121e12, "T4 (fp16)": 65e12}  # dense peaks
MFU = 0.30  # assumed share of peak a small-model training step reaches on a GPU (see README)


@dataclass
class Recipe:
    name: str
    llm: object  # a transformers config
    llm_class: type
    encoder: tuple[str, object]
    image_tokens: int
    before_image: int  # chat text before the image (system prompt); run once when the LLM is frozen
    frozen: bool


RECIPES = [
    Recipe("clip-vit-b16 -> mlp -> SmolLM2-360M (frozen)",
           LlamaConfig(hidden_size=960, intermediate_size=2560, num_hidden_layers=32, num_attention_heads=15,
                       num_key_value_heads=5, vocab_size=49152, tie_word_embeddings=True),
           LlamaForCausalLM, ("clip", CLIPVisionConfig(patch_size=16)), 196, 24, True),
    Recipe("siglip-base -> query(64) -> Qwen2.5-0.5B (LoRA)",
           Qwen2Config(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                       num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True),
           Qwen2ForCausalLM, ("siglip", SiglipVisionConfig()), 64, 30, False),
]


def caption_flops(recipe: Recipe) -> float:
    """Forward and backward (activation gradients into the adapter's tokens) of one sample, the LM head applied
    at the labelled positions only (the caption's, at the end of the row), as the caption stage runs it."""
    recipe.llm._attn_implementation = "eager"  # sdpa's mask checks read values, which meta tensors do not have
    with torch.device("meta"):
        model = recipe.llm_class(recipe.llm).requires_grad_(False)
    length = recipe.image_tokens + AFTER_IMAGE + CAPTION_TOKENS + (0 if recipe.frozen else recipe.before_image)
    embeds = torch.empty(1, length, recipe.llm.hidden_size, device="meta", requires_grad=True)
    counter = FlopCounterMode(display=False)
    with counter:
        mask = torch.ones(1, length, dtype=torch.long, device="meta")
        logits = model(inputs_embeds=embeds, attention_mask=mask, logits_to_keep=CAPTION_TOKENS, use_cache=False).logits
        logits.float().logsumexp(-1).sum().backward()
    return counter.get_total_flops()


def encoder_flops(family: str, config) -> float:
    with torch.device("meta"):
        model = model_class(family)(config).eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(pixel_values=torch.empty(1, 3, config.image_size, config.image_size, device="meta"))
    return counter.get_total_flops()


def main() -> None:
    images, captions = FLICKR8K_TRAIN
    for recipe in RECIPES:
        per_sample = caption_flops(recipe)
        features = encoder_flops(*recipe.encoder) * images
        epoch = per_sample * images * captions
        print(f"\n{recipe.name}\n  caption step: {per_sample / 1e9:.0f} GFLOP per sample; one Flickr8k epoch "
              f"({images * captions:,} samples): {epoch / 1e15:.2f} PFLOP; encoder features once: "
              f"{features / 1e15:.3f} PFLOP")
        for gpu, peak in GPUS.items():
            seconds = epoch / (peak * MFU)
            print(f"  {gpu:16s} at {MFU:.0%} of peak: {seconds / 60:5.1f} min per epoch on 1 GPU, "
                  f"{seconds / 60 / 4:5.1f} min on 4")


if __name__ == "__main__":
    main()
