"""Named encoder + adapter checkpoint + LLM combinations; `default` runs fully offline."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlm_demo.encoders import ENCODERS
from vlm_demo.llms import LLMS

ASSETS = Path(__file__).resolve().parent.parent / "assets"
ADAPTERS_DIR = ASSETS / "adapters"


@dataclass(frozen=True)
class Combo:
    """An encoder, an adapter and an LLM. `checkpoint` is a folder or hub id; without one the adapter is untrained."""

    name: str
    encoder: str
    adapter: str  # adapter family
    llm: str
    checkpoint: str | None = None
    adapter_options: dict[str, Any] = field(default_factory=dict)  # family options for an untrained adapter
    description: str = ""

    @property
    def checkpoint_path(self) -> str | None:
        """The checkpoint if it exists (a shipped folder) or is a hub id; None if it is not shipped yet."""
        if self.checkpoint is None:
            return None
        if Path(self.checkpoint).is_dir():
            return self.checkpoint
        local = ADAPTERS_DIR / self.checkpoint
        if local.is_dir():
            return str(local)
        return None if "/" not in self.checkpoint else self.checkpoint

    @property
    def trained(self) -> bool:
        return self.checkpoint_path is not None

    def availability(self) -> str:
        states = [ENCODERS[self.encoder].availability(), LLMS[self.llm].availability()]
        missing = [state for state in states if not state.startswith("available")]
        where = missing[0] if missing else "available"
        adapter = "trained adapter" if self.trained else "UNTRAINED adapter (random init)"
        return f"{where}; {adapter}"


def _combo(name: str, adapter: str, description: str, encoder: str = "efficientnet-lite0",
           llm: str = "smollm2-135m-instruct", **options: Any) -> Combo:
    return Combo(name, encoder, adapter, llm, checkpoint=f"{encoder}--{name}--{llm}",
                 adapter_options=options, description=description)


COMBOS: dict[str, Combo] = {
    combo.name: combo
    for combo in [
        _combo("mlp", "mlp", "Linear-GELU-Linear per token (+ early stage detail for colour), 49 tokens; default",
               stage_features=[0, 1], stage_subgrid=[4, 2], input_norm=True),
        _combo("linear", "linear", "one Linear layer on the pooled vector, k=1 pseudo-token", num_tokens=1),
        _combo("query", "query", "32 learnable queries with self/cross-attention", num_queries=32, width=256,
               num_blocks=2),
        _combo("attention", "attention", "4 self-attention blocks over the 49 tokens"),
        _combo("perceiver", "perceiver", "perceiver resampler, 32 latents"),
        _combo("multistage", "multistage", "multi-stage CNN fusion (v4) over four EfficientNet stage maps",
               version="v4"),
        _combo("tinylm", "tinylm", "tiny causal LM behind a 1-layer perceiver resampler (PaLM2-VAdapter)"),
        _combo("dinov2-mlp", "mlp", "DINOv2-small tokens through an MLP", encoder="dinov2-small"),
        _combo("clip-mlp-qwen", "mlp", "CLIP ViT-B/16 -> MLP -> Qwen2.5-0.5B-Instruct (hub models)",
               encoder="clip-vit-b16", llm="qwen2.5-0.5b-instruct"),
        _combo("siglip-query-smollm2-360m", "query", "SigLIP -> 64 queries -> SmolLM2-360M (hub models)",
               encoder="siglip-base", llm="smollm2-360m-instruct", num_queries=64),
    ]
}
COMBOS["default"] = COMBOS["mlp"]
DEFAULT_COMBO = "default"


def get_combo(name: str) -> Combo:
    if name not in COMBOS:
        raise ValueError(f"unknown combination '{name}'; known: {', '.join(COMBOS)}")
    return COMBOS[name]


def combo_from_checkpoint(path_or_id: str) -> Combo:
    """A combination defined by an adapter checkpoint's own record of its encoder and LLM."""
    from vlm_demo.adapters.base import read_config

    config = read_config(path_or_id)
    return Combo(f"checkpoint:{path_or_id}", config.get("encoder", ""), config["kind"], config.get("llm", ""),
                 checkpoint=str(path_or_id), description=f"adapter checkpoint {path_or_id}")
