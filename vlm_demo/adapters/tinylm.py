"""A tiny causal LM behind a 1-layer perceiver resampler, used as the adapter (PaLM2-VAdapter)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
    lm_kv_heads: int = 0  # 0 = lm_heads (no grouped-query attention)
    lm_intermediate: int = 0  # 0 = 4 x lm_width
    lm_rope_theta: int = 0  # 0 = transformers' default
    # Start the tiny LM from the first `lm_layers` layers (and the embeddings) of the big LLM; its shape options
    # must then match the LLM's (the error names them).
    init_from_llm: bool = False


def lm_config(c: TinyLMConfig) -> LlamaConfig:
    """The tiny LM's transformers config from the adapter config."""
    extra: dict[str, Any] = {"rope_theta": float(c.lm_rope_theta)} if c.lm_rope_theta else {}
    return LlamaConfig(
        vocab_size=c.vocab_size, hidden_size=c.lm_width, intermediate_size=c.lm_intermediate or 4 * c.lm_width,
        num_hidden_layers=c.lm_layers, num_attention_heads=c.lm_heads, num_key_value_heads=c.lm_kv_heads or c.lm_heads,
        max_position_embeddings=1024, tie_word_embeddings=True, **extra,
    )


def options_matching(llm_config: Any) -> dict[str, int]:
    """The adapter options that give the tiny LM the big LLM's layer shapes (for `init_from_llm`)."""
    rope = getattr(llm_config, "rope_parameters", None) or {}
    return {"vocab_size": llm_config.vocab_size, "lm_width": llm_config.hidden_size,
            "lm_heads": llm_config.num_attention_heads,
            "lm_kv_heads": getattr(llm_config, "num_key_value_heads", None) or llm_config.num_attention_heads,
            "lm_intermediate": llm_config.intermediate_size,
            "lm_rope_theta": int(rope.get("rope_theta", 0) or getattr(llm_config, "rope_theta", 0) or 0)}


class TinyLMAdapter(Adapter):
    """Tiny causal LM behind a 1-layer perceiver resampler (PaLM2-VAdapter).

    Stage 1 (`python -m train decoder`) trains `lm` as a caption decoder (`language_model_loss`), without the big
    LLM; stage 2 (`caption` with `model.init_from` set to stage 1's output) uses it as the adapter.
    """

    config_class = TinyLMConfig
    no_grid_reason = "mixes the grid through a small language model: no token belongs to one cell"

    def __init__(self, config: TinyLMConfig) -> None:
        super().__init__(config)
        c = self.config
        self.resampler = PerceiverResampler(c.token_dim, c.lm_width, c.num_latents, depth=1, heads=c.lm_heads)
        self.lm = LlamaForCausalLM(lm_config(c))
        self.output_proj = nn.Linear(c.lm_width, c.llm_hidden)

    @property
    def num_output_tokens(self) -> int:
        return self.config.num_latents

    def start_from(self, encoder: Any, llm: Any) -> None:
        """With `init_from_llm`, copy the LLM's embeddings, its first `lm_layers` decoder layers and final norm."""
        if not self.config.init_from_llm:
            return
        self.copy_llm_layers(llm.model)

    def copy_llm_layers(self, model: nn.Module) -> None:
        """Copy the first `lm_layers` layers of a Llama-style causal LM (refused unless the shapes match)."""
        c, wanted = self.config, options_matching(model.config)
        mismatched = {key: value for key, value in wanted.items()
                      if key != "lm_rope_theta" and getattr(c, key) != value}
        if mismatched or model.config.num_hidden_layers < c.lm_layers:
            raise ValueError(f"init_from_llm needs the tiny LM shaped like the LLM's layers: set adapter options "
                             f"{mismatched or wanted} and lm_layers <= {model.config.num_hidden_layers}")
        source = model.model if hasattr(model, "model") else model
        target = self.lm.model
        with torch.no_grad():
            target.embed_tokens.weight.copy_(source.embed_tokens.weight)
            target.norm.load_state_dict(source.norm.state_dict())
            for index in range(c.lm_layers):
                target.layers[index].load_state_dict(source.layers[index].state_dict())

    def forward(self, features: EncoderOutput, input_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Pseudo-tokens for the big LLM; with caption `input_ids`, stage 1's loss instead (one entry point, so a
        process-synchronised wrapper sees both)."""
        if input_ids is not None:
            return self.language_model_loss(features, input_ids,
                                            torch.ones_like(input_ids) if attention_mask is None else attention_mask)
        latents = self.resampler(features.tokens)
        hidden = self.lm.model(inputs_embeds=latents).last_hidden_state
        return self.output_proj(hidden)

    def language_model_loss(
        self, features: EncoderOutput, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """Stage 1: the tiny LM decodes the caption after the resampled image latents (cross-entropy)."""
        latents = self.resampler(features.tokens)
        text = self.lm.get_input_embeddings()(input_ids)
        embeds = torch.cat([latents, text.to(latents.dtype)], dim=1)
        mask = torch.cat([torch.ones(latents.shape[:2], dtype=attention_mask.dtype, device=latents.device),
                          attention_mask], dim=1)
        labels = torch.full(embeds.shape[:2], -100, dtype=torch.long, device=latents.device)
        labels[:, latents.shape[1]:] = input_ids.masked_fill(attention_mask == 0, -100)
        return self.lm(inputs_embeds=embeds, attention_mask=mask, labels=labels).loss
