"""Image -> encoder -> adapter -> spliced prompt -> LLM: captions, batched captions and streamed chat."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import torch
from PIL import Image

from vlm_demo.adapters import Adapter, adapter_for
from vlm_demo.checkpoint import Checkpoint
from vlm_demo.combos import Combo, get_combo
from vlm_demo.encoders import EncoderOutput, VisionEncoder, build_encoder
from vlm_demo.llms import IMAGE_PLACEHOLDER, GenerationSettings, LanguageModel, SplicedInputs, load_llm
from vlm_demo.llms.generation import Cancelled
from vlm_demo.sources import default_device

DEFAULT_PROMPT = "Describe this image."
MAX_MESSAGE_CHARS = 2_000  # one question or prompt
MAX_CONVERSATION_CHARS = 8_000  # the earlier turns and the new message together (about 2,000 tokens)
MAX_TURNS = 12  # earlier (question, answer) turns in one conversation
MAX_PROMPT_TOKENS = 2_048  # the chat template's text tokens (a character can cost several), image tokens apart
MAX_IMAGES = 4  # images in one conversation, at most
IMAGE_TOKEN_BUDGET = 400  # image tokens in one conversation, at most: more images only while they fit


class PromptTooLong(ValueError):
    """A message or conversation over the caps; the message says which and what to do, in one line."""


def check_prompt(message: str, history: list[tuple[str, str]] | None = None) -> None:
    """Refuse a message or a conversation longer than the caps, before any work is done for it."""
    if len(message) > MAX_MESSAGE_CHARS:
        raise PromptTooLong(f"the message is {len(message):,} characters long; the limit is {MAX_MESSAGE_CHARS:,}")
    if len(history or []) > MAX_TURNS:
        raise PromptTooLong(f"the conversation has {len(history or []):,} turns; the limit is {MAX_TURNS}: clear it "
                            "to start a new one")
    total = len(message) + sum(len(user) + len(answer or "") for user, answer in history or [])
    if total > MAX_CONVERSATION_CHARS:
        raise PromptTooLong(f"the conversation is {total:,} characters long; the limit is "
                            f"{MAX_CONVERSATION_CHARS:,}: clear it to start a new one")


def check_prompt_tokens(llm: LanguageModel, text: str) -> None:
    """Refuse a templated prompt of more than MAX_PROMPT_TOKENS text tokens, before the LLM sees it."""
    count = len(llm.tokenizer(text, add_special_tokens=False)["input_ids"])
    if count > MAX_PROMPT_TOKENS:
        raise PromptTooLong(f"the conversation is {count:,} tokens long; the limit is {MAX_PROMPT_TOKENS:,}: clear it "
                            "to start a new one")


def images_allowed(tokens_per_image: int) -> int:
    """How many images one conversation can hold when each costs `tokens_per_image` image tokens (at least one)."""
    return max(1, min(MAX_IMAGES, IMAGE_TOKEN_BUDGET // max(1, tokens_per_image)))


def build_prompt(llm: LanguageModel, question: str, history: list[tuple[str, str]] | None = None,
                 images_per_turn: list[int] | None = None) -> str:
    """Chat text with image placeholders at the start of user turns (used for inference and training alike):
    `images_per_turn` counts them for each turn, the new question last; by default one image, in the first turn."""
    question = question.replace(IMAGE_PLACEHOLDER, "").strip() or DEFAULT_PROMPT
    turns = list(history or []) + [(question, None)]
    counts = list(images_per_turn) if images_per_turn is not None else [1] + [0] * (len(turns) - 1)
    if len(counts) != len(turns):
        raise ValueError(f"{len(counts)} image counts for {len(turns)} user turns")
    messages = []
    for (user, assistant), count in zip(turns, counts):
        user = user.replace(IMAGE_PLACEHOLDER, "")
        messages.append({"role": "user", "content": f"{IMAGE_PLACEHOLDER}\n" * count + user})
        if assistant is not None:
            messages.append({"role": "assistant", "content": assistant})
    return llm.chat_text(messages)


class VisionLanguageModel:
    """One loaded combination. `trained` is False when the adapter is randomly initialised.

    The adapter comes from `adapter_for`, which checks a checkpoint against the encoder and LLM. `lora_dir` is a peft
    LoRA of the LLM trained together with the adapter; it is attached to the (shared) LLM and switched on only for
    this combination's generations.
    """

    def __init__(self, encoder: VisionEncoder, adapter: Adapter, llm: LanguageModel, trained: bool,
                 name: str = "custom", lora_dir: str | None = None) -> None:
        self.encoder, self.adapter, self.llm = encoder, adapter.eval(), llm
        self.trained = trained
        self.name = name
        self.lora: str | None = None
        if lora_dir:
            self.lora = "lora_" + hashlib.sha1(str(lora_dir).encode()).hexdigest()[:12]
            llm.attach_lora(self.lora, lora_dir)

    @classmethod
    def from_combo(cls, combo: Combo | str, llm: LanguageModel | None = None, encoder: VisionEncoder | None = None,
                   precision: str = "auto") -> VisionLanguageModel:
        """A registered or ad-hoc combination: its checkpoint if one ships, else a seeded random adapter; an LLM not
        given is loaded in `precision` (see vlm_demo.llms.quantize)."""
        combo = get_combo(combo) if isinstance(combo, str) else combo
        device = default_device()
        encoder = encoder or build_encoder(combo.encoder).to(device)
        llm = llm or load_llm(combo.llm, device=device, precision=precision)
        if combo.checkpoint_path:
            return cls.from_checkpoint(combo.checkpoint_path, llm=llm, encoder=encoder, name=combo.name)
        torch.manual_seed(0)
        adapter = adapter_for(encoder, llm.name, llm.hidden_size, combo.adapter, combo.adapter_options, llm=llm)
        return cls(encoder, adapter, llm, trained=False, name=combo.name)

    @classmethod
    def from_checkpoint(cls, checkpoint: Checkpoint | str | Path, llm: LanguageModel | None = None,
                        encoder: VisionEncoder | None = None, name: str | None = None,
                        precision: str = "auto") -> VisionLanguageModel:
        """An adapter checkpoint (folder, hub id, or one already resolved) with the encoder and LLM its config names,
        or the ones given; it is resolved once, and a mismatch is refused naming both sides."""
        checkpoint = Checkpoint.resolve(checkpoint)
        device = default_device()
        llm_name = checkpoint.llm  # recorded in its config, or refused before anything loads
        encoder = checkpoint.vision_encoder(encoder).to(device)
        llm = llm or load_llm(llm_name, device=device, precision=precision)
        adapter = adapter_for(encoder, llm.name, llm.hidden_size, checkpoint=checkpoint)
        return cls(encoder, adapter, llm, trained=True, name=name or f"checkpoint:{checkpoint.source}",
                   lora_dir=checkpoint.lora)

    @property
    def status(self) -> str:
        if not self.trained:
            return "UNTRAINED adapter (random weights): captions are not meaningful"
        return "trained adapter + LoRA on the LLM" if self.lora else "trained adapter"

    def features(self, images: list[Image.Image]) -> EncoderOutput:
        return self.encoder(images)

    @torch.inference_mode()
    def image_tokens(self, images: list[Image.Image]) -> torch.Tensor:
        """The adapter's pseudo-tokens [B, T, H] in the LLM's embedding space."""
        features = self.features(images).to(self.llm.device)
        return self.adapter.to(self.llm.device)(features).to(self.llm.dtype)

    def prompt_text(self, question: str, history: list[tuple[str, str]] | None = None,
                    images_per_turn: list[int] | None = None) -> str:
        return build_prompt(self.llm, question, history, images_per_turn)

    @property
    def max_images(self) -> int:
        """Images one conversation with this combination can hold (see `images_allowed`)."""
        return images_allowed(self.adapter.num_output_tokens)

    def prepare(self, images: list[Image.Image], questions: list[str],
                image_tokens: torch.Tensor | None = None) -> SplicedInputs:
        for question in questions:
            check_prompt(question)
        texts = [self.prompt_text(question) for question in questions]
        for text in dict.fromkeys(texts):
            check_prompt_tokens(self.llm, text)
        tokens = self.image_tokens(images) if image_tokens is None else image_tokens
        with torch.inference_mode():
            return self.llm.splice(texts, tokens)

    def generate(self, inputs: SplicedInputs, settings: GenerationSettings | None = None,
                 cancelled: Cancelled | None = None) -> list[str]:
        """Answers for prepared inputs, through this combination's LLM (with its LoRA, if it has one)."""
        return self.llm.generate(inputs, settings, lora=self.lora, cancelled=cancelled)

    def caption(self, images: list[Image.Image], prompt: str = DEFAULT_PROMPT,
                settings: GenerationSettings | None = None, cancelled: Cancelled | None = None) -> list[str]:
        """One answer per image, generated as one left-padded batch (cut short once `cancelled()` is true)."""
        return self.generate(self.prepare(images, [prompt] * len(images)), settings, cancelled)

    def chat(self, image: Image.Image | list[Image.Image], message: str, history: list[tuple[str, str]] | None = None,
             settings: GenerationSettings | None = None, cancelled: Cancelled | None = None,
             images_per_turn: list[int] | None = None, reuse_prefix: bool = True) -> Iterator[str]:
        """Stream the answer to `message` about `image` (or several images, placed at the user turns
        `images_per_turn` counts), given earlier (user, assistant) turns; closing the iterator or `cancelled()`
        turning true stops the generation. With `reuse_prefix` the keys and values of what an earlier turn already
        computed are reused (same answer, computed from the new message on)."""
        check_prompt(message, history)
        images = image if isinstance(image, list) else [image]
        if len(images) > self.max_images:
            raise ValueError(f"{len(images)} images are more than this combination takes in one conversation "
                             f"({self.max_images})")
        text = self.prompt_text(message, history, images_per_turn)
        check_prompt_tokens(self.llm, text)
        tokens = torch.cat([self.image_tokens([picture]) for picture in images])  # each alone: the same rows every turn
        with torch.inference_mode():
            inputs = self.llm.splice([text], [tokens])
        yield from self.llm.stream(inputs, settings, lora=self.lora, cancelled=cancelled, reuse_prefix=reuse_prefix)
