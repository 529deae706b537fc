"""Stage 2: cross-entropy on the answer tokens with image tokens spliced in; LLM frozen, LoRA or QLoRA."""

from __future__ import annotations

from pathlib import Path

import torch

from train.config import TrainConfig
from train.stages import Batch, StageParts
from vlm_demo.adapters import Adapter, lora_folder
from vlm_demo.llms import LLMS, LanguageModel
from vlm_demo.pipeline import build_prompt


def caption_stage(config: TrainConfig, adapter: Adapter, llm: LanguageModel) -> StageParts:
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
        output = llm.model(inputs_embeds=inputs.inputs_embeds, attention_mask=inputs.attention_mask,
                           position_ids=inputs.position_ids, labels=inputs.labels)
        return output.loss

    return StageParts(adapter=adapter, loss=loss, extra_trainable=extra, save_extra=save_extra)
