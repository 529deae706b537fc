"""Label-space adapter: the encoder's own classifier (frozen) picks its top classes, and each becomes a few soft
tokens whose table starts from the class names' token embeddings: the encoder's knowledge handed over as near-words.
`LabelTokens` is also what other families append when asked to carry the classifier's view (`class_tokens`)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from vlm_demo.adapters.base import Adapter, AdapterConfig
from vlm_demo.encoders.base import EncoderOutput

if TYPE_CHECKING:
    from vlm_demo.encoders import VisionEncoder
    from vlm_demo.llms import LanguageModel

IMAGENET_CLASSES = 1000
TOKENS_PER_CLASS = 4  # table rows per class: a class name's first tokens, then fillers
NAME_FILLER = ","  # pads a class name shorter than tokens_per_class, so the top classes read like a list
EVERYDAY_NAMES = Path(__file__).with_name("imagenet_everyday.txt")  # "Granny Smith, a type of apple", class order


@cache
def everyday_names() -> tuple[str, ...]:
    """The 1000 ImageNet classes in everyday words (written from WordNet by train/label_phrases.py)."""
    return tuple(line for line in EVERYDAY_NAMES.read_text().splitlines() if line and not line.startswith("#"))


class LabelTokens(nn.Module):
    """pooled [B, D] -> frozen head -> top-k classes -> k * m tokens [B, k*m, H] (+ rank and confidence terms)."""

    def __init__(self, token_dim: int, hidden: int, num_classes: int, top_k: int, tokens_per_class: int,
                 train_table: bool = True, everyday: bool = False) -> None:
        super().__init__()
        self.top_k, self.tokens_per_class, self.everyday = top_k, tokens_per_class, everyday
        self.head = nn.Linear(token_dim, num_classes).requires_grad_(False)
        self.table = nn.Parameter(torch.randn(num_classes, tokens_per_class, hidden) * 0.02, requires_grad=train_table)
        self.rank = nn.Parameter(torch.zeros(top_k, 1, hidden))
        self.confidence = nn.Parameter(torch.zeros(hidden))

    @property
    def num_tokens(self) -> int:
        return self.top_k * self.tokens_per_class

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        probs = self.head(pooled.to(self.head.weight.dtype)).float().softmax(dim=-1)
        chance, classes = probs.topk(self.top_k, dim=-1)  # [B, k]
        tokens = self.table[classes] + self.rank + chance[..., None, None].to(self.table.dtype) * self.confidence
        return tokens.flatten(1, 2)

    @torch.no_grad()
    def start_from(self, encoder: VisionEncoder, llm: LanguageModel) -> None:
        """Copy the encoder's classifier and write each class name's token embeddings (its everyday phrase's, when
        asked and the head is ImageNet-1k's) into the table."""
        head = encoder.class_head
        if head is None:
            raise ValueError(f"{encoder.name} has no classification head to read labels from")
        if tuple(head.weight.shape) != tuple(self.head.weight.shape):
            raise ValueError(f"{encoder.name}'s head is {tuple(head.weight.shape)}, the adapter expects "
                             f"{tuple(self.head.weight.shape)}")
        self.head.weight.copy_(head.weight)
        self.head.bias.copy_(head.bias)
        embed = llm.model.get_input_embeddings().weight
        filler = llm.tokenizer(NAME_FILLER, add_special_tokens=False)["input_ids"][:1]
        names = everyday_names() if self.everyday and len(head.names) == IMAGENET_CLASSES else head.names
        for index, name in enumerate(names):
            ids = llm.tokenizer(" " + name, add_special_tokens=False)["input_ids"][:self.tokens_per_class]
            ids = ids + filler * (self.tokens_per_class - len(ids))
            self.table[index] = embed[torch.tensor(ids, device=embed.device)].to(self.table.dtype).cpu()


@dataclass
class LabelConfig(AdapterConfig):
    kind: str = "label"
    num_classes: int = IMAGENET_CLASSES
    top_k: int = 3  # classes handed to the LLM
    tokens_per_class: int = TOKENS_PER_CLASS
    # False keeps every class's rows at its name's embeddings: what the LLM learns to read from them then holds for
    # the classes the training images never showed (a trained row drifts from its name; an unseen one does not).
    train_table: bool = True
    # True starts each class's rows from its everyday phrase ("Granny Smith, a type of apple") instead of its name
    # (with tokens_per_class room enough for the category).
    everyday_names: bool = False

    @property
    def needs(self) -> frozenset[str]:
        return frozenset({"class_head"})


class LabelAdapter(Adapter):
    """The encoder's top-k ImageNet classes as soft tokens started from their names (a baseline of near-words)."""

    config_class = LabelConfig
    no_grid_reason = "hands the LLM the encoder's predicted classes: its tokens are labels, not places"

    def __init__(self, config: LabelConfig) -> None:
        super().__init__(config)
        c = self.config
        self.labels = LabelTokens(c.token_dim, c.llm_hidden, c.num_classes, c.top_k, c.tokens_per_class, c.train_table,
                                  c.everyday_names)

    @property
    def num_output_tokens(self) -> int:
        return self.labels.num_tokens

    def start_from(self, encoder: VisionEncoder, llm: LanguageModel) -> None:
        self.labels.start_from(encoder, llm)

    def forward(self, features: EncoderOutput) -> torch.Tensor:
        return self.labels(features.pooled)
