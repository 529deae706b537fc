"""A tiny causal LM behind a 1-layer perceiver resampler, used as the adapter (PaLM2-VAdapter)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

from vlm_demo.adapters.base import Adapter, AdapterConfig
from vlm_demo.adapters.perceiver import PerceiverResampler
from vlm_demo.encoders.base import EncoderOutput


@dataclass
class TinyLMConfig(AdapterConfig):
    kind: str = "tinylm"
    vocab_size: int = 49152  # the big LLM's tokenizer, so stage 1 can train the tiny LM on the same captions
    lm_width: int = 256
    lm_layers: int = 4
    lm_heads: int = 4
    num_latents: int = 32


class TinyLMAdapter(Adapter):
    """Tiny causal LM behind a 1-layer perceiver resampler (PaLM2-VAdapter).

    Stage 1 trains `lm` as a caption decoder (`language_model_loss`); stage 2 uses it as the adapter.
    """

    config_class = TinyLMConfig

    def __init__(self, config: TinyLMConfig) -> None:
        super().__init__(config)
        c = self.config
        self.resampler = PerceiverResampler(c.token_dim, c.lm_width, c.num_latents, depth=1, heads=c.lm_heads)
        self.lm = LlamaForCausalLM(
            LlamaConfig(
                vocab_size=c.vocab_size, hidden_size=c.lm_width, intermediate_size=4 * c.lm_width,
                num_hidden_layers=c.lm_layers, num_attention_heads=c.lm_heads, num_key_value_heads=c.lm_heads,
                max_position_embeddings=1024, tie_word_embeddings=True,
            )
        )
        self.output_proj = nn.Linear(c.lm_width, c.llm_hidden)

    @property
    def num_output_tokens(self) -> int:
        return self.config.num_latents

    def forward(self, features: EncoderOutput) -> torch.Tensor:
        latents = self.resampler(features.tokens)
        hidden = self.lm.model(inputs_embeds=latents).last_hidden_state
        return self.output_proj(hidden)

    def language_model_loss(
        self, features: EncoderOutput, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """Stage 1: the tiny LM decodes the caption after the resampled image latents (cross-entropy)."""
        latents = self.resampler(features.tokens)
        text = self.lm.get_input_embeddings()(input_ids)
        embeds = torch.cat([latents, text], dim=1)
        mask = torch.cat([torch.ones(latents.shape[:2], dtype=attention_mask.dtype, device=latents.device),
                          attention_mask], dim=1)
        labels = torch.full(embeds.shape[:2], -100, dtype=torch.long, device=latents.device)
        labels[:, latents.shape[1]:] = input_ids.masked_fill(attention_mask == 0, -100)
        return self.lm(inputs_embeds=embeds, attention_mask=mask, labels=labels).loss
