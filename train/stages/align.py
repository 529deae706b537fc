"""Stage 1 without any LLM forward: EMD to caption token embeddings, or MSE/cosine to a teacher's tokens."""

from __future__ import annotations

import torch

from train.config import TrainConfig
from train.losses import cosine_loss, emd_loss, mse_loss
from train.stages import Batch, StageParts
from vlm_demo.adapters import Adapter
from vlm_demo.llms import LanguageModel


def align_stage(config: TrainConfig, adapter: Adapter, llm: LanguageModel | None) -> StageParts:
    settings = config.align
    if settings.loss == "emd":
        if llm is None:
            raise ValueError("the EMD loss needs the LLM's embedding table")
        table = llm.vocabulary_embeddings().float().clone()  # only the table: the LLM never runs
        tokenizer = llm.tokenizer

        def loss(batch: Batch) -> torch.Tensor:
            tokens = adapter(batch.features)
            encoded = tokenizer([s.target for s in batch.samples], add_special_tokens=False, padding=True,
                                return_tensors="pt")
            words = table.to(tokens.device)[encoded["input_ids"].to(tokens.device)]
            return emd_loss(tokens.float(), words, encoded["attention_mask"].to(tokens.device),
                            settings.emd_method, settings.sinkhorn_reg)
    else:
        distance = mse_loss if settings.loss == "mse" else cosine_loss

        def loss(batch: Batch) -> torch.Tensor:
            if batch.teacher is None:
                raise ValueError("distillation needs align.teacher (a teacher encoder name)")
            return distance(adapter(batch.features), batch.teacher)

    return StageParts(adapter=adapter, loss=loss)
