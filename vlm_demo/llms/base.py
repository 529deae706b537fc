"""A causal LM with its tokenizer: embeddings, splicing image tokens into the chat prompt, generation."""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase, TextIteratorStreamer

from vlm_demo.llms.generation import (
    Cancelled,
    GenerationCancelled,
    GenerationSettings,
    LoraGate,
    interruptible,
    stop_between_layers,
)
from vlm_demo.llms.prefix_cache import PrefixCache

__all__ = ["IMAGE_PLACEHOLDER", "GenerationSettings", "LanguageModel", "LoraGate", "SplicedInputs"]

IMAGE_PLACEHOLDER = "<image>"
# With inputs_embeds the penalty applies to generated tokens only, which is what we want for image prompts.
warnings.filterwarnings("ignore", message="Passing `repetition_penalty` with `inputs_embeds`")
warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute")  # several LoRAs on one LLM
# peft imports bitsandbytes, whose optional faster CPU 4-bit kernel would come from the hub; the fallback is fine.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)


@dataclass
class SplicedInputs:
    """A padded batch ready for the LLM; `labels` are -100 everywhere except target (answer) tokens."""

    inputs_embeds: torch.Tensor  # [B, L, H]
    attention_mask: torch.Tensor  # [B, L]
    position_ids: torch.Tensor  # [B, L]
    labels: torch.Tensor  # [B, L]
    image_spans: list[list[tuple[int, int]]]  # per sample, [start, end) of each image's tokens


class LanguageModel:
    """Wraps a Hugging Face causal LM; `name` is the registry name or hub id it was loaded as.

    LoRA adapters trained with an image adapter are attached by name and are active only in the calls that ask
    for them, so one copy of the LLM serves combinations with and without LoRA.
    """

    def __init__(self, name: str, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
        self.name = name
        self.model = model.eval()
        self.tokenizer = tokenizer
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self._lora_gate = LoraGate(self._activate_lora)
        self.prefixes = PrefixCache()
        self.precision = "fp32"  # how the weights are held (load_llm sets it)
        stop_between_layers(self.model)

    @property
    def loras(self) -> list[str]:
        return list(getattr(self.model, "peft_config", {}) or {})

    def attach_lora(self, name: str, folder: str) -> None:
        """Load a peft LoRA adapter (adapter_config.json + adapter_model.safetensors) under `name`, once."""
        with self._lora_gate.exclusive():
            if name in self.loras:
                return
            try:
                self.model.load_adapter(folder, adapter_name=name)
            except Exception as error:
                # peft registers the name and injects layers before reading the weights: undo that, or later
                # calls would run a half-attached LoRA believed loaded
                if name in self.loras:
                    self.model.delete_adapter(name)
                line = (str(error).strip().splitlines() or [type(error).__name__])[0]
                raise ValueError(f"the LoRA in {folder} could not be attached to {self.name}: {line}") from error
            finally:
                self.model.eval()  # the new LoRA dropout layers start in training mode

    def _activate_lora(self, lora: str | None) -> None:
        if not self.loras:
            if lora is not None:
                raise ValueError(f"no LoRA adapter '{lora}' is attached to {self.name}")
            return
        if lora is None:
            self.model.disable_adapters()
        else:
            self.model.set_adapter(lora)
            self.model.enable_adapters()

    @property
    def hidden_size(self) -> int:
        return self.model.get_input_embeddings().embedding_dim

    @property
    def device(self) -> torch.device:
        return self.model.get_input_embeddings().weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.get_input_embeddings().weight.dtype

    def vocabulary_embeddings(self) -> torch.Tensor:
        """The input embedding table [V, H] (what image tokens are compared against)."""
        return self.model.get_input_embeddings().weight.detach()

    def chat_text(self, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """The prompt text, with IMAGE_PLACEHOLDER where the image goes."""
        if self.tokenizer.chat_template:
            return self.tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=add_generation_prompt
            )
        lines = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
        return "\n".join(lines) + ("\nAssistant:" if add_generation_prompt else "")

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    def splice(
        self,
        prompts: list[str],
        image_embeds: torch.Tensor | list[torch.Tensor] | None = None,
        targets: list[str] | None = None,
        padding_side: str = "left",
    ) -> SplicedInputs:
        """Embed each prompt text, putting one image's tokens where each IMAGE_PLACEHOLDER was.

        `image_embeds` is [B, T, H] (one image per prompt), a list with one [N, T, H] per prompt (its N images, in
        placeholder order) or None for text only. With `targets`, each target text (plus end-of-turn) is appended
        and becomes the only labelled part.
        """
        embed = self.model.get_input_embeddings()
        end_of_turn = self.tokenizer.eos_token or ""
        rows, label_rows, spans = [], [], []
        for index, prompt in enumerate(prompts):
            pieces = prompt.split(IMAGE_PLACEHOLDER)
            images = None if image_embeds is None else (
                image_embeds[index] if isinstance(image_embeds, list) else image_embeds[index:index + 1])
            wanted = 0 if images is None else images.shape[0]
            if len(pieces) - 1 != wanted:
                raise ValueError(f"prompt {index} has {len(pieces) - 1} image placeholders, expected {wanted}")
            parts, labels, sample_spans, length = [], [], [], 0
            for number, piece in enumerate(pieces):
                ids = torch.tensor(self._ids(piece), dtype=torch.long, device=self.device)
                parts.append(embed(ids))
                labels.append(torch.full((len(ids),), -100, dtype=torch.long, device=self.device))
                length += len(ids)
                if number < len(pieces) - 1:
                    image = images[number].to(self.dtype)
                    parts.append(image)
                    labels.append(torch.full((image.shape[0],), -100, dtype=torch.long, device=self.device))
                    sample_spans.append((length, length + image.shape[0]))
                    length += image.shape[0]
            if targets is not None:
                ids = torch.tensor(self._ids(targets[index] + end_of_turn), dtype=torch.long, device=self.device)
                parts.append(embed(ids))
                labels.append(ids)
            rows.append(torch.cat(parts))
            label_rows.append(torch.cat(labels))
            spans.append(sample_spans)
        return self._pad(rows, label_rows, spans, padding_side)

    def _pad(self, rows, label_rows, spans, padding_side: str) -> SplicedInputs:
        longest = max(row.shape[0] for row in rows)
        batch = len(rows)
        embeds = rows[0].new_zeros(batch, longest, rows[0].shape[-1])
        mask = torch.zeros(batch, longest, dtype=torch.long, device=self.device)
        labels = torch.full((batch, longest), -100, dtype=torch.long, device=self.device)
        for index, (row, row_labels) in enumerate(zip(rows, label_rows)):
            start = longest - row.shape[0] if padding_side == "left" else 0
            embeds[index, start:start + row.shape[0]] = row
            mask[index, start:start + row.shape[0]] = 1
            labels[index, start:start + row.shape[0]] = row_labels
            if start:
                spans[index] = [(a + start, b + start) for a, b in spans[index]]
        position_ids = (mask.cumsum(dim=1) - 1).clamp(min=0)
        return SplicedInputs(embeds, mask, position_ids, labels, spans)

    @torch.inference_mode()
    def generate(self, inputs: SplicedInputs, settings: GenerationSettings | None = None,
                 lora: str | None = None, cancelled: Cancelled | None = None) -> list[str]:
        """Generate one answer per row of a left-padded batch, with the named LoRA adapter or none; stops early once
        `cancelled()` is true."""
        settings = settings or GenerationSettings()
        with self._lora_gate.using(lora, cancelled), interruptible(cancelled):
            output = self.model.generate(
                inputs_embeds=inputs.inputs_embeds, attention_mask=inputs.attention_mask,
                pad_token_id=self.tokenizer.pad_token_id, **settings.generate_kwargs(cancelled),
            )
        return [text.strip() for text in self.tokenizer.batch_decode(output, skip_special_tokens=True)]

    def stream(self, inputs: SplicedInputs, settings: GenerationSettings | None = None,
               lora: str | None = None, cancelled: Cancelled | None = None, reuse_prefix: bool = True) -> Iterator[str]:
        """Yield text pieces of a single answer as they are generated, with the named LoRA adapter or none.

        With `reuse_prefix`, the keys and values of the longest prefix this prompt shares with a conversation
        answered before are reused (see `PrefixCache`), and this conversation's are kept for the next turn.
        The generation stops when the consumer closes this iterator (or stops reading and `cancelled()` turns
        true), and is joined before the iterator ends, so no abandoned generation keeps running."""
        settings = settings or GenerationSettings()
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=False, skip_special_tokens=True)
        errors: list[BaseException] = []
        closed = threading.Event()
        rows = inputs.inputs_embeds[0]
        reuse = reuse_prefix and inputs.inputs_embeds.shape[0] == 1 and bool(inputs.attention_mask.all())

        def stop() -> bool:
            return closed.is_set() or (cancelled is not None and cancelled())

        def run() -> None:
            try:
                with torch.inference_mode(), self._lora_gate.using(lora, stop), interruptible(stop):
                    cache = self._cache_for(lora, rows) if reuse else None
                    output = self.model.generate(
                        inputs_embeds=inputs.inputs_embeds, attention_mask=inputs.attention_mask,
                        pad_token_id=self.tokenizer.pad_token_id, streamer=streamer, past_key_values=cache,
                        **settings.generate_kwargs(stop),
                    )
                    if cache is not None:
                        self.prefixes.put(lora, torch.cat([rows, self.model.get_input_embeddings()(output[0])]), cache)
            except BaseException as error:  # noqa: BLE001 - re-raised in the caller's thread
                errors.append(error)
                streamer.end()

        thread = threading.Thread(target=run, name="generate", daemon=True)
        thread.start()
        try:
            yield from streamer
        finally:
            closed.set()
            thread.join()
        if errors and not isinstance(errors[0], GenerationCancelled):
            raise errors[0]

    def _cache_for(self, lora: str | None, rows: torch.Tensor) -> DynamicCache:
        """The stored cache sharing the longest prefix with `rows`, or a new empty one."""
        cache, _ = self.prefixes.take(lora, rows)
        return cache if cache is not None else DynamicCache(config=self.model.config)
