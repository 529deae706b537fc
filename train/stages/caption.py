"""Stage 2: cross-entropy on the answer tokens with image tokens spliced in; LLM frozen, LoRA or QLoRA."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from train.config import TrainConfig
from train.stages import Batch, StageParts
from vlm_demo.adapters import Adapter, lora_folder
from vlm_demo.llms import LLMS, LanguageModel, SplicedInputs
from vlm_demo.pipeline import build_prompt


def labelled_loss(model: nn.Module, inputs: SplicedInputs) -> torch.Tensor:
    """Mean cross-entropy (fp32) over the answer tokens, with the LM head applied only where it is needed.

    Logits at position t predict token t+1, so the positions kept are those whose next token is labelled;
    transformers' `logits_to_keep` takes that boolean mask and runs the head (and any logit soft-capping) on
    those rows only, for a plain, LoRA or QLoRA model alike.
    """
    following = inputs.labels[:, 1:]
    keep = torch.zeros_like(inputs.labels, dtype=torch.bool)
    keep[:, :-1] = following != -100
    logits = model(inputs_embeds=inputs.inputs_embeds, attention_mask=inputs.attention_mask,
                   position_ids=inputs.position_ids, logits_to_keep=keep, use_cache=False).logits
    return F.cross_entropy(logits.float(), following[following != -100])


def full_logits_loss(model: nn.Module, inputs: SplicedInputs) -> torch.Tensor:
    """The reference: logits at every position and the model's own shifted cross-entropy."""
    return model(inputs_embeds=inputs.inputs_embeds, attention_mask=inputs.attention_mask,
                 position_ids=inputs.position_ids, labels=inputs.labels, use_cache=False).loss


def caption_stage(config: TrainConfig, adapter: Adapter, llm: LanguageModel, labelled_only: bool = True
                  ) -> StageParts:
    """`labelled_only=False` computes logits at every position (the slower reference path, for benchmarks)."""
    settings = config.caption
    extra, save_extra = [], None
    llm.model.requires_grad_(False)
    if settings.llm_mode in ("lora", "qlora"):
        from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training

        if settings.llm_mode == "qlora":
            llm.model = prepare_model_for_kbit_training(llm.model, use_gradient_checkpointing=False)
        earlier = lora_folder(config.model.init_from) if config.model.init_from else None
        if earlier:  # continue the LoRA trained together with the starting adapter
            llm.model = PeftModel.from_pretrained(llm.model, earlier, is_trainable=True)
        else:
            lora = LoraConfig(r=settings.lora_r, lora_alpha=settings.lora_alpha, lora_dropout=settings.lora_dropout,
                              target_modules=settings.lora_targets, task_type="CAUSAL_LM")
            llm.model = get_peft_model(llm.model, lora)
        llm.model.train()
        extra = [llm.model]

        def save_extra(folder: str) -> None:
            spec = LLMS.get(config.model.llm)
            for lora_config in llm.model.peft_config.values():  # name the base model portably, not by local path
                lora_config.base_model_name_or_path = spec.hub_id if spec else config.model.llm
            llm.model.save_pretrained(folder)  # adapter_config.json + adapter_model.safetensors
            (Path(folder) / "README.md").unlink(missing_ok=True)  # peft's empty card; the adapter's card covers it
    else:
        llm.model.eval()

    def loss(batch: Batch) -> torch.Tensor:
        tokens = adapter(batch.features)
        prompts = [build_prompt(llm, sample.prompt) for sample in batch.samples]
        inputs = llm.splice(prompts, tokens, targets=[s.target for s in batch.samples], padding_side="right")
        return (labelled_loss if labelled_only else full_logits_loss)(llm.model, inputs)

    return StageParts(adapter=adapter, loss=loss, extra_trainable=extra, save_extra=save_extra)
