"""PaLM2-VAdapter stage 1: the tiny LM of a `tinylm` adapter learns to decode captions after its resampled image
latents, without the big LLM (which is loaded only for its tokenizer and, with `init_from_llm`, its first layers).
Stage 2 is `caption` with `model.init_from` set to this stage's output."""

from __future__ import annotations

import torch

from train.config import TrainConfig
from train.stages import Batch, Needs, StageParts
from vlm_demo.adapters import Adapter
from vlm_demo.llms import LanguageModel


def needs(config: TrainConfig) -> Needs:
    """The LLM's tokenizer and weights are read (the tiny LM shares its vocabulary); the LLM never runs."""
    if config.model.adapter != "tinylm" and not config.model.init_from:
        raise ValueError(f"the decoder stage trains a tinylm adapter's language model, not '{config.model.adapter}'")
    return Needs(llm=True)


def decoder_stage(config: TrainConfig, adapter: Adapter, llm: LanguageModel | None) -> StageParts:
    if not hasattr(adapter, "language_model_loss"):
        raise ValueError(f"the decoder stage needs a tinylm adapter, got '{adapter.config.kind}'")
    if llm is None:
        raise ValueError("the decoder stage needs the LLM's tokenizer")
    vocabulary = getattr(adapter.config, "vocab_size", 0)
    if len(llm.tokenizer) > vocabulary:
        raise ValueError(f"the tiny LM's vocab_size {vocabulary} is smaller than the tokenizer of {llm.name} "
                         f"({len(llm.tokenizer)}); set model.adapter_options.vocab_size")
    tokenizer, end = llm.tokenizer, llm.tokenizer.eos_token or ""

    def loss(batch: Batch) -> torch.Tensor:
        encoded = tokenizer([s.target + end for s in batch.samples], add_special_tokens=False, padding=True,
                            return_tensors="pt")
        device = batch.features.tokens.device
        return parts.adapter(batch.features, encoded["input_ids"].to(device), encoded["attention_mask"].to(device))

    adapter.output_proj.requires_grad_(False)  # the projection into the big LLM trains in stage 2
    parts = StageParts(adapter=adapter, loss=loss)
    return parts
