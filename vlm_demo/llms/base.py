"""A causal LM with its tokenizer: embeddings, splicing image tokens into the chat prompt, generation."""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase, TextIteratorStreamer

IMAGE_PLACEHOLDER = "<image>"
# With inputs_embeds the penalty applies to generated tokens only, which is what we want for image prompts.
warnings.filterwarnings("ignore", message="Passing `repetition_penalty` with `inputs_embeds`")
warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute")  # several LoRAs on one LLM
# peft imports bitsandbytes, whose optional faster CPU 4-bit kernel would come from the hub; the fallback is fine.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)


@dataclass
class GenerationSettings:
    """How answers are generated. These defaults are the only ones: the CLI, the app and the API start from them."""

    max_new_tokens: int = 48
    temperature: float = 0.0  # 0 means greedy
    top_p: float = 0.9
    seed: int | None = 0
    repetition_penalty: float = 1.1

    def check(self, most_new_tokens: int | None = None) -> GenerationSettings:
        """These settings, or a ValueError saying which one is out of range."""
        if self.max_new_tokens < 1 or (most_new_tokens and self.max_new_tokens > most_new_tokens):
            upper = f" and {most_new_tokens}" if most_new_tokens else ""
            raise ValueError(f"max new tokens must be {'between 1' + upper if upper else 'at least 1'}, "
                             f"not {self.max_new_tokens}")
        if not 0.0 <= self.temperature <= 2.0:
            raise ValueError(f"temperature must be in [0, 2] (0 = greedy), not {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top-p must be in (0, 1], not {self.top_p}")
        if self.seed is not None and self.seed < 0:
            raise ValueError(f"the seed must be 0 or more, not {self.seed}")
        return self

    def generate_kwargs(self) -> dict:
        sampling = self.temperature > 0
        kwargs = {
            "max_new_tokens": self.max_new_tokens,
            "do_sample": sampling,
            "repetition_penalty": self.repetition_penalty,
        }
        if sampling:
            kwargs.update(temperature=self.temperature, top_p=self.top_p)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        return kwargs


@dataclass
class SplicedInputs:
    """A padded batch ready for the LLM; `labels` are -100 everywhere except target (answer) tokens."""

    inputs_embeds: torch.Tensor  # [B, L, H]
    attention_mask: torch.Tensor  # [B, L]
    position_ids: torch.Tensor  # [B, L]
    labels: torch.Tensor  # [B, L]
    image_spans: list[list[tuple[int, int]]]  # per sample, [start, end) of each image's tokens


class LoraGate:
    """Lets generations that want the same LoRA adapter (or none) run together; a switch waits for them to end."""

    def __init__(self, activate: Callable[[str | None], None]) -> None:
        self._activate = activate
        self._condition = threading.Condition()
        self._active: str | None = None
        self._running = 0

    @contextmanager
    def using(self, lora: str | None) -> Iterator[None]:
        with self._condition:
            self._condition.wait_for(lambda: self._running == 0 or self._active == lora)
            if self._active != lora:
                self._activate(lora)
                self._active = lora
            self._running += 1
        try:
            yield
        finally:
            with self._condition:
                self._running -= 1
                self._condition.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """No generation runs inside; the previous LoRA choice is re-applied after."""
        with self._condition:
            self._condition.wait_for(lambda: self._running == 0)
            yield
            self._activate(self._active)


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
        image_embeds: torch.Tensor | None = None,
        targets: list[str] | None = None,
        padding_side: str = "left",
    ) -> SplicedInputs:
        """Embed each prompt text, putting one image's tokens where each IMAGE_PLACEHOLDER was.

        `image_embeds` is [B, T, H] (one image per prompt) or None for text only. With `targets`,
        each target text (plus end-of-turn) is appended and becomes the only labelled part.
        """
        embed = self.model.get_input_embeddings()
        end_of_turn = self.tokenizer.eos_token or ""
        rows, label_rows, spans = [], [], []
        for index, prompt in enumerate(prompts):
            pieces = prompt.split(IMAGE_PLACEHOLDER)
            wanted = 0 if image_embeds is None else 1
            if len(pieces) - 1 != wanted:
                raise ValueError(f"prompt {index} has {len(pieces) - 1} image placeholders, expected {wanted}")
            parts, labels, sample_spans, length = [], [], [], 0
            for number, piece in enumerate(pieces):
                ids = torch.tensor(self._ids(piece), dtype=torch.long, device=self.device)
                parts.append(embed(ids))
                labels.append(torch.full((len(ids),), -100, dtype=torch.long, device=self.device))
                length += len(ids)
                if number < len(pieces) - 1:
                    image = image_embeds[index].to(self.dtype)
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
                 lora: str | None = None) -> list[str]:
        """Generate one answer per row of a left-padded batch, with the named LoRA adapter or none."""
        settings = settings or GenerationSettings()
        if settings.seed is not None:
            torch.manual_seed(settings.seed)
        with self._lora_gate.using(lora):
            output = self.model.generate(
                inputs_embeds=inputs.inputs_embeds, attention_mask=inputs.attention_mask,
                pad_token_id=self.tokenizer.pad_token_id, **settings.generate_kwargs(),
            )
        return [text.strip() for text in self.tokenizer.batch_decode(output, skip_special_tokens=True)]

    def stream(self, inputs: SplicedInputs, settings: GenerationSettings | None = None,
               lora: str | None = None) -> Iterator[str]:
        """Yield text pieces of a single answer as they are generated, with the named LoRA adapter or none."""
        settings = settings or GenerationSettings()
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=False, skip_special_tokens=True)
        errors: list[BaseException] = []

        def run() -> None:
            try:
                with torch.inference_mode(), self._lora_gate.using(lora):
                    if settings.seed is not None:
                        torch.manual_seed(settings.seed)
                    self.model.generate(
                        inputs_embeds=inputs.inputs_embeds, attention_mask=inputs.attention_mask,
                        pad_token_id=self.tokenizer.pad_token_id, streamer=streamer, **settings.generate_kwargs(),
                    )
            except BaseException as error:  # noqa: BLE001 - re-raised in the caller's thread
                errors.append(error)
                streamer.end()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        yield from streamer
        thread.join()
        if errors:
            raise errors[0]
