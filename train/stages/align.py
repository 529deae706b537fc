"""Stage 1 without any LLM forward: EMD to caption token embeddings, or MSE/cosine to a teacher's tokens."""

from __future__ import annotations

import torch

from train.config import TrainConfig
from train.losses import cosine_loss, emd_loss, mse_loss
from train.stages import Batch, Needs, StageParts
from vlm_demo.adapters import Adapter
from vlm_demo.llms import LanguageModel


def needs(config: TrainConfig) -> Needs:
    """EMD reads the LLM's embedding table (the LLM never runs); distillation needs the teacher encoder."""
    if config.align.loss == "emd":
        return Needs(llm=True)
    if not config.align.teacher:
        raise ValueError(f"align.loss='{config.align.loss}' distils a teacher: set align.teacher (an encoder name)")
    return Needs(teacher=config.align.teacher)


def align_stage(config: TrainConfig, adapter: Adapter, llm: LanguageModel | None) -> StageParts:
    settings = config.align
    if settings.loss == "emd":
        if llm is None:
            raise ValueError("the EMD loss needs the LLM's embedding table")
        table = llm.vocabulary_embeddings().float().clone()  # only the table: the LLM never runs
        tokenizer = llm.tokenizer
        reg = settings.batched_reg if settings.emd_method in ("batched", "auto") else settings.sinkhorn_reg

        def loss(batch: Batch) -> torch.Tensor:
            tokens = parts.adapter(batch.features)
            encoded = tokenizer([s.target for s in batch.samples], add_special_tokens=False, padding=True,
                                return_tensors="pt")
            words = table.to(tokens.device)[encoded["input_ids"].to(tokens.device)]
            return emd_loss(tokens.float(), words, encoded["attention_mask"].to(tokens.device), settings.emd_method,
                            reg)
    else:
        distance = mse_loss if settings.loss == "mse" else cosine_loss

        def loss(batch: Batch) -> torch.Tensor:
            if batch.teacher is None:
                raise ValueError("distillation needs align.teacher (a teacher encoder name)")
            return distance(parts.adapter(batch.features).float(), batch.teacher)

    parts = StageParts(adapter=adapter, loss=loss)
    return parts
