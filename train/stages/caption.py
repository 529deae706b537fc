"""Stage 2: cross-entropy on the answer tokens with image tokens spliced in; LLM frozen, LoRA or QLoRA."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import DynamicCache

from train.config import TrainConfig
from train.stages import Batch, Needs, StageParts
from vlm_demo.adapters import Adapter
from vlm_demo.checkpoint import Checkpoint
from vlm_demo.llms import IMAGE_PLACEHOLDER, LLMS, LanguageModel, SplicedInputs
from vlm_demo.pipeline import build_prompt


class SharedPrefix:
    """Keys and values of the chat text before the image, which every prompt shares, computed once.

    Valid only while nothing before the image trains (a frozen LLM). With SmolLM2's default system prompt this
    spares every layer 24 of the ~100 tokens of each row.
    """

    def __init__(self, llm: LanguageModel) -> None:
        self.llm, self.text, self.length = llm, "", 0
        self.keys_values: list[tuple[torch.Tensor, torch.Tensor]] = []

    def strip(self, prompts: list[str]) -> list[str] | None:
        """The prompts without the shared prefix (None if they do not share one); caches a new prefix first."""
        text = prompts[0].split(IMAGE_PLACEHOLDER, 1)[0]
        if not text or not all(prompt.startswith(text + IMAGE_PLACEHOLDER) for prompt in prompts):
            return None
        if text != self.text:
            with torch.no_grad():
                embeds = self.llm.splice([text]).inputs_embeds
                cache = self.llm.model(inputs_embeds=embeds, use_cache=True).past_key_values
            self.keys_values = [(layer.keys, layer.values) for layer in cache.layers]
            self.text, self.length = text, embeds.shape[1]
        return [prompt[len(text):] for prompt in prompts]

    def cache(self, batch: int) -> DynamicCache:
        """A fresh cache holding the prefix for `batch` rows (the model appends each step's keys to it)."""
        cache = DynamicCache(config=self.llm.model.config)
        for index, (keys, values) in enumerate(self.keys_values):
            cache.update(keys.expand(batch, -1, -1, -1), values.expand(batch, -1, -1, -1), index)
        return cache


def labelled_loss(model: nn.Module, inputs: SplicedInputs, prefix: SharedPrefix | None = None) -> torch.Tensor:
    """Mean cross-entropy (fp32) over the answer tokens, with the LM head applied only where it is needed.

    Logits at position t predict token t+1, so the positions kept are those whose next token is labelled;
    transformers' `logits_to_keep` takes that boolean mask and runs the head (and any logit soft-capping) on
    those rows only, for a plain, LoRA or QLoRA model alike. With `prefix`, `inputs` holds what follows it.
    """
    following = inputs.labels[:, 1:]
    keep = torch.zeros_like(inputs.labels, dtype=torch.bool)
    keep[:, :-1] = following != -100
    mask, positions, past = inputs.attention_mask, inputs.position_ids, None
    if prefix is not None:
        past = prefix.cache(len(mask))
        mask = torch.cat([mask.new_ones(len(mask), prefix.length), mask], dim=1)
        positions = positions + prefix.length
    logits = model(inputs_embeds=inputs.inputs_embeds, attention_mask=mask, position_ids=positions,
                   past_key_values=past, logits_to_keep=keep, use_cache=past is not None).logits
    return F.cross_entropy(logits.float(), following[following != -100])


def full_logits_loss(model: nn.Module, inputs: SplicedInputs) -> torch.Tensor:
    """The reference: logits at every position and the model's own shifted cross-entropy."""
    return model(inputs_embeds=inputs.inputs_embeds, attention_mask=inputs.attention_mask,
                 position_ids=inputs.position_ids, labels=inputs.labels, use_cache=False).loss


def needs(config: TrainConfig) -> Needs:
    """The LLM runs forward, in the compute dtype; QLoRA loads it in 4 bits."""
    return Needs(llm=True, llm_runs=True, quantization="4bit" if config.caption.llm_mode == "qlora" else None)


def caption_stage(config: TrainConfig, adapter: Adapter, llm: LanguageModel, labelled_only: bool = True
                  ) -> StageParts:
    """`labelled_only=False` computes logits at every position and no shared prefix (the path before issue 16)."""
    settings = config.caption
    trainable_llm, save_extra = None, None
    llm.model.requires_grad_(False)
    if settings.llm_mode in ("lora", "qlora"):
        from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training

        if settings.llm_mode == "qlora":
            llm.model = prepare_model_for_kbit_training(llm.model, use_gradient_checkpointing=False)
        earlier = Checkpoint.resolve(config.model.init_from).lora if config.model.init_from else None
        if earlier:  # continue the LoRA trained together with the starting adapter
            llm.model = PeftModel.from_pretrained(llm.model, earlier, is_trainable=True)
        else:
            lora = LoraConfig(r=settings.lora_r, lora_alpha=settings.lora_alpha, lora_dropout=settings.lora_dropout,
                              target_modules=settings.lora_targets, task_type="CAUSAL_LM")
            llm.model = get_peft_model(llm.model, lora)
        llm.model.train()
        trainable_llm = llm.model

        def save_extra(folder: str) -> None:
            spec = LLMS.get(config.model.llm)
            for lora_config in llm.model.peft_config.values():  # name the base model portably, not by local path
                lora_config.base_model_name_or_path = spec.hub_id if spec else config.model.llm
            llm.model.save_pretrained(folder)  # adapter_config.json + adapter_model.safetensors
            (Path(folder) / "README.md").unlink(missing_ok=True)  # peft's empty card; the adapter's card covers it
    else:
        llm.model.eval()

    prefix = SharedPrefix(llm) if labelled_only and settings.llm_mode == "frozen" else None

    def loss(batch: Batch) -> torch.Tensor:
        tokens = parts.adapter(batch.features)
        prompts = [build_prompt(llm, sample.prompt) for sample in batch.samples]
        targets = [sample.target for sample in batch.samples]
        model = parts.llm if parts.llm is not None else llm.model  # the prepared (synchronised) one when it trains
        rest = prefix.strip(prompts) if prefix else None
        if rest is not None:
            return labelled_loss(model, llm.splice(rest, tokens, targets, padding_side="right"), prefix)
        inputs = llm.splice(prompts, tokens, targets, padding_side="right")
        return (labelled_loss if labelled_only else full_logits_loss)(model, inputs)

    parts = StageParts(adapter=adapter, loss=loss, llm=trainable_llm, save_extra=save_extra,
                       llm_lr=(settings.lora_lr or None) if trainable_llm is not None else None)
    return parts
