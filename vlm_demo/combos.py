"""Named encoder + adapter checkpoint + LLM combinations (`default` runs fully offline), and finding the one for
three picked parts."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlm_demo.adapters import ADAPTERS, adapter_needs
from vlm_demo.encoders import ENCODERS, NEEDS
from vlm_demo.hub import HUB_ID
from vlm_demo.llms import LLMS

ASSETS = Path(__file__).resolve().parent.parent / "assets"
ADAPTERS_DIR = ASSETS / "adapters"


def shipped_folders(root: Path | None = None) -> list[Path]:
    """The checkpoint folders under assets/adapters (or `root`), by name; dot folders are a ship in progress."""
    root = root or ADAPTERS_DIR
    if not root.is_dir():
        return []
    return [folder for folder in sorted(root.iterdir()) if folder.is_dir() and not folder.name.startswith(".")]


class ComboError(ValueError):
    """Parts that do not exist or cannot work together; the message says which and what to pick instead."""


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


LEGACY_ENCODER = "efficientnet-lite0-swish"  # the features the first shipped adapters were trained on


def _combo(name: str, adapter: str, description: str, encoder: str = "efficientnet-lite0",
           llm: str = "smollm2-135m-instruct", suffix: str = "", **options: Any) -> Combo:
    return Combo(name, encoder, adapter, llm, checkpoint=f"{encoder}--{adapter}--{llm}{suffix}",
                 adapter_options=options, description=description)


_MLP = {"stage_features": [0, 1], "stage_subgrid": [4, 2], "input_norm": True}
_LEGACY = "; on the legacy Swish features of EfficientNet-Lite0 (trained before the activation fix)"

COMBOS: dict[str, Combo] = {
    combo.name: combo
    for combo in [
        _combo("mlp", "mlp", "Linear-GELU-Linear per token (+ early stage detail for colour), 49 tokens, + the "
               "encoder's top-3 ImageNet classes as 12 label tokens", **_MLP, class_tokens=3),
        _combo("mlp-family-recipe", "mlp", "the default mlp before its LoRA stage: trained with the family recipe "
               "(1200 frozen-LLM caption steps) like every other family", **_MLP, class_tokens=3,
               suffix="--family-recipe"),
        _combo("linear", "linear", "one Linear layer on the pooled vector, k=1 pseudo-token", num_tokens=1),
        _combo("query", "query", "32 learnable queries with self/cross-attention"),
        _combo("attention", "attention", "4 self-attention blocks over the 49 tokens"),
        _combo("perceiver", "perceiver", "perceiver resampler, 32 latents"),
        _combo("multistage", "multistage", "multi-stage CNN fusion (v4) over four EfficientNet stage maps",
               version="v4"),
        _combo("tinylm", "tinylm", "tiny causal LM behind a 1-layer perceiver resampler (PaLM2-VAdapter)"),
        _combo("label", "label", "the encoder's own ImageNet head: top-3 classes as 24 tokens, kept at their everyday "
               "phrases ('Granny Smith, a type of apple'), read by a LoRA", tokens_per_class=8, train_table=False,
               everyday_names=True),
        _combo("mlp-swish", "mlp", "the first shipped MLP adapter (+ LoRA)" + _LEGACY, encoder=LEGACY_ENCODER,
               **_MLP),
        _combo("linear-swish", "linear", "the first shipped linear adapter" + _LEGACY, encoder=LEGACY_ENCODER,
               num_tokens=1),
        _combo("query-swish", "query", "the first shipped query adapter" + _LEGACY, encoder=LEGACY_ENCODER),
        _combo("dinov2-mlp", "mlp", "DINOv2-small tokens, each 2x2 of patches merged into one (65 tokens), through an "
               "MLP", encoder="dinov2-small", token_merge=2, input_norm=True),
        _combo("clip-mlp-qwen", "mlp", "CLIP ViT-B/16 -> MLP -> Qwen2.5-0.5B-Instruct (hub models)",
               encoder="clip-vit-b16", llm="qwen2.5-0.5b-instruct"),
        _combo("siglip-query-smollm2-360m", "query", "SigLIP -> 64 queries -> SmolLM2-360M (hub models)",
               encoder="siglip-base", llm="smollm2-360m-instruct", num_queries=64),
    ]
}
COMBOS["default"] = COMBOS["mlp"]
DEFAULT_COMBO = "default"
HUB_PREFIX = "hub:"  # a picker value naming an adapter loaded by hub id (Models tab, --checkpoint owner/name)
_HUB_COMBOS: dict[str, Combo] = {}


def hub_combo_for(repo_id: str, config: dict[str, Any]) -> Combo:
    """The combination of an adapter loaded by hub id (parts from its config), remembered so the pickers can offer
    it while it stays loaded."""
    encoder, kind, llm = (str(config.get(key, "")) for key in ("encoder", "kind", "llm"))
    combo = Combo(HUB_PREFIX + repo_id, encoder, kind, llm, checkpoint=repo_id,
                  description=f"adapter loaded from the hub: {repo_id}")
    _HUB_COMBOS[combo.name] = combo
    return combo


def loaded_hub_combos() -> list[Combo]:
    """Every adapter loaded by hub id so far (whether still in the model cache or not), in loading order."""
    return list(_HUB_COMBOS.values())


def hub_combos(encoder: str, llm: str) -> list[Combo]:
    """Adapters loaded by hub id for this encoder and LLM, in the order they were loaded."""
    return [combo for combo in _HUB_COMBOS.values() if (combo.encoder, combo.llm) == (encoder, llm)]


def get_combo(name: str) -> Combo:
    if name not in COMBOS:
        raise ValueError(f"unknown combination '{name}'; known: {', '.join(COMBOS)}")
    return COMBOS[name]


def find_combo(encoder: str, adapter: str, llm: str) -> Combo | None:
    """The registered combination with these three parts, if any."""
    for name, combo in COMBOS.items():
        if name != DEFAULT_COMBO and (combo.encoder, combo.adapter, combo.llm) == (encoder, adapter, llm):
            return combo
    return None


def _hub_pick(encoder: str, adapter: str, llm: str) -> Combo:
    combo = _HUB_COMBOS.get(adapter)
    if combo is None:
        raise ComboError(f"{adapter.removeprefix(HUB_PREFIX)} is not loaded: load it by id in the Models tab first.")
    if (combo.encoder, combo.llm) != (encoder, llm):
        raise ComboError(f"{combo.checkpoint} was trained for {combo.encoder} and {combo.llm}; pick those.")
    return combo


def _family_options(kind: str, encoder: str) -> dict[str, Any]:
    """Options of the first registered combination of this family that the encoder can serve ({} if none)."""
    for combo in COMBOS.values():
        if combo.adapter == kind and adapter_needs(kind, combo.adapter_options) <= ENCODERS[encoder].gives:
            return dict(combo.adapter_options)
    return {}


def adapter_families(encoder: str) -> list[str]:
    """Adapter families that can run on an encoder (as each family declares what it needs)."""
    return [kind for kind in ADAPTERS if adapter_needs(kind) <= ENCODERS[encoder].gives]


def trained_families(encoder: str, llm: str) -> list[str]:
    return [kind for kind in adapter_families(encoder) if (c := find_combo(encoder, kind, llm)) and c.trained]


def resolve_combo(encoder: str | None, adapter: str | None, llm: str | None) -> Combo:
    """A registered combination, or an ad-hoc one with an untrained adapter; impossible choices raise ComboError."""
    default = COMBOS[DEFAULT_COMBO]
    encoder, adapter, llm = (encoder or default.encoder), (adapter or default.adapter), (llm or default.llm).strip()
    if adapter.startswith(HUB_PREFIX):
        return _hub_pick(encoder, adapter, llm)
    if encoder not in ENCODERS:
        raise ComboError(f"Unknown encoder '{encoder}'. Pick one of: {', '.join(ENCODERS)}.")
    if adapter not in ADAPTERS:
        raise ComboError(f"Unknown adapter '{adapter}'. Pick one of: {', '.join(ADAPTERS)}.")
    if llm not in LLMS and not HUB_ID.match(llm):
        raise ComboError(f"Unknown LLM '{llm}': pick one from the list or type a hub id such as owner/model-name.")
    missing = sorted(adapter_needs(adapter) - ENCODERS[encoder].gives)
    if missing:
        able = sorted(name for name, spec in ENCODERS.items() if adapter_needs(adapter) <= spec.gives)
        raise ComboError(f"The {adapter} adapter needs {' and '.join(NEEDS[need] for need in missing)}, which "
                         f"{encoder} does not give; use {' or '.join(able)}.")
    found = find_combo(encoder, adapter, llm)
    if found is not None:
        return found
    return Combo(f"{adapter} on {encoder} \u2192 {llm}", encoder, adapter, llm, checkpoint=None,
                 adapter_options=_family_options(adapter, encoder),
                 description="ad-hoc combination (no checkpoint ships)")
