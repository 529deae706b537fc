"""The adapter interface: encoder features in, LLM-width pseudo-tokens out; config.json + model.safetensors, and the
family registry a checkpoint finds its class in."""

from __future__ import annotations

import math
import os
import re
from dataclasses import asdict, dataclass, field, fields
from numbers import Integral, Real
from pathlib import Path
from typing import Any, ClassVar

import torch
from huggingface_hub import PyTorchModelHubMixin
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_model
from torch import nn

from vlm_demo.encoders.base import EncoderOutput

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
LORA_FOLDER = "lora"  # optional: a peft LoRA of the LLM trained together with the adapter
ENCODER_WEIGHTS = "encoder.safetensors"  # optional: the encoder fine-tuned together with the adapter
MAX_SIZE = 2**20  # any integer setting (widths, vocabularies, token counts)
MAX_COUNT = 256  # layers, blocks and heads: each is a module built in a loop
COUNTS = re.compile(r"(layers|blocks|depth|heads)$")


class CheckpointError(ValueError):
    """A checkpoint is missing, damaged, or made for another encoder/LLM combination."""


@dataclass
class AdapterConfig:
    """Fields every adapter records, so a checkpoint can be checked against a combination."""

    kind: str = ""
    encoder: str = ""  # encoder name the adapter was built for
    token_dim: int = 0  # width of the encoder's image tokens
    num_encoder_tokens: int = 0
    stage_dims: list[int] = field(default_factory=list)
    llm: str = ""  # LLM name the adapter feeds
    llm_hidden: int = 0  # the LLM's hidden size (output width)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> AdapterConfig:
        types = {item.name: item.type for item in fields(cls)}
        unknown = sorted(set(values) - set(types))
        if unknown:
            raise CheckpointError(f"config for '{cls.__name__}' has unknown keys: {', '.join(unknown)}")
        return cls(**{name: _checked(name, types[name], value) for name, value in values.items()})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def needs(self) -> frozenset[str]:
        """What this adapter reads beyond image tokens (keys of `vlm_demo.encoders.NEEDS`); only some encoders give
        them."""
        return frozenset()


def _checked(name: str, kind: str, value: Any) -> Any:
    """One config value of the declared type and in range, or a CheckpointError naming it."""
    if kind == "list[int]":
        if not isinstance(value, (list, tuple)) or not all(_is_int(v) for v in value) or len(value) > MAX_COUNT:
            raise CheckpointError(f"config field '{name}' must be a list of integers, not {value!r:.60}")
        for item in value:
            _checked(name, "int", item)
        return list(value)
    if kind == "int":
        if not _is_int(value):
            raise CheckpointError(f"config field '{name}' must be an integer, not {value!r:.60}")
        top = MAX_COUNT if COUNTS.search(name) else MAX_SIZE
        if not 0 <= value <= top:
            raise CheckpointError(f"config field '{name}' must be between 0 and {top}, not {value}")
        return int(value)
    if kind == "float":
        if not isinstance(value, Real) or isinstance(value, bool) or not math.isfinite(value) or not 0 <= value <= 1:
            raise CheckpointError(f"config field '{name}' must be a number between 0 and 1, not {value!r:.60}")
        return float(value)
    if kind == "bool" and not isinstance(value, bool):
        raise CheckpointError(f"config field '{name}' must be true or false, not {value!r:.60}")
    if kind == "str" and not isinstance(value, str):
        raise CheckpointError(f"config field '{name}' must be a string, not {value!r:.60}")
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def header_shapes(weights: str) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes from a safetensors header (no tensor data is read)."""
    try:
        with safe_open(weights, framework="pt") as handle:
            return {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"{weights}: not a readable checkpoint ({error})") from None


def check_weights_fit(cls: type[Adapter], config: AdapterConfig, stored: dict[str, tuple[int, ...]]) -> None:
    """Refuse a config whose adapter would not be the one in the weights file (`stored`: its header's shapes), before
    any memory is allocated (the adapter is built on torch's meta device, which holds shapes only)."""
    try:
        with torch.device("meta"):
            skeleton = cls(config)
    except (ValueError, TypeError, ZeroDivisionError, RuntimeError, AssertionError) as error:
        raise CheckpointError(f"config.json describes no buildable '{config.kind}' adapter ({error})") from None
    groups: dict[int, list[str]] = {}  # tied tensors are stored once, under any of their names
    for name, tensor in skeleton.state_dict(keep_vars=True).items():
        groups.setdefault(id(tensor), []).append(name)
        if name in stored and stored[name] != tuple(tensor.shape):
            raise CheckpointError(f"config.json does not match {WEIGHTS_NAME}: '{name}' would be "
                                  f"{list(tensor.shape)}, the file has {list(stored[name])}")
    missing = [names[0] for names in groups.values() if not any(n in stored for n in names)]
    expected = {name for names in groups.values() for name in names}
    unexpected = sorted(set(stored) - expected)
    if missing or unexpected:
        raise CheckpointError(f"config.json does not match {WEIGHTS_NAME} (missing: {missing[:3]}, "
                              f"unexpected: {unexpected[:3]})")


def load_weights(cls: type[Adapter], config: AdapterConfig, weights: str | Path,
                 map_location: str = "cpu") -> Adapter:
    """A `cls` adapter with `config` and the tensors of a safetensors file, refused before any memory is allocated
    when they do not fit (a missing file, or any other format, is never read)."""
    weights = str(weights)
    if not os.path.isfile(weights):
        raise CheckpointError(f"{Path(weights).parent}: no {WEIGHTS_NAME} (only safetensors checkpoints are read)")
    check_weights_fit(cls, config, header_shapes(weights))
    model = cls(config)
    try:
        missing, unexpected = load_model(model, weights, strict=False, device=map_location)
    except (SafetensorError, OSError, RuntimeError) as error:
        raise CheckpointError(f"{weights}: not a readable checkpoint for this adapter ({error})") from None
    if missing or unexpected:
        raise CheckpointError(f"{weights}: weights do not fit a '{model.config.kind}' adapter with this config "
                              f"(missing: {missing[:3]}, unexpected: {unexpected[:3]})")
    return model


class Adapter(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="vlm_demo",
    tags=["vision-language-adapter", "vlm_demo"],
    license="apache-2.0",
):
    """Base class: subclasses set `config_class` and implement `forward` and `num_output_tokens`."""

    config_class: ClassVar[type[AdapterConfig]] = AdapterConfig

    def __init__(self, config: AdapterConfig) -> None:
        super().__init__()
        if isinstance(config, dict):
            config = self.config_class.from_dict(config)
        self.config = config

    @property
    def num_output_tokens(self) -> int:
        """How many pseudo-tokens the adapter puts into the prompt per image."""
        raise NotImplementedError

    @property
    def embed_dim(self) -> int:
        return self.config.llm_hidden

    @property
    def needs_stage_maps(self) -> bool:
        return "stage_maps" in self.config.needs

    # Why this family's tokens cannot be drawn over the image, for families whose tokens come from no single cell.
    no_grid_reason: ClassVar[str] = "has tokens that do not come from single grid cells"

    def token_grid(self) -> tuple[int | None, str]:
        """(side, note) when the first side*side image tokens come one per cell of a square grid over the image, row
        by row (the note says what else is true of them); else (None, why not)."""
        return None, f"the {self.config.kind} adapter {self.no_grid_reason}"

    def forward(self, features: EncoderOutput) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def start_from(self, encoder: Any, llm: Any) -> None:
        """Initialise a new adapter from its encoder and LLM where the family can (e.g. from class names)."""

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    @classmethod
    def _from_pretrained(cls, *, model_id: str, map_location: str = "cpu",
                         config: dict[str, Any] | AdapterConfig | None = None, **_: Any) -> Adapter:
        """huggingface_hub's `from_pretrained`, for a checkpoint folder (a hub id goes through
        `vlm_demo.checkpoint.Checkpoint`, which fetches it into a folder once)."""
        if not os.path.isdir(model_id):
            raise CheckpointError(f"{model_id}: not a checkpoint folder; load a hub id with "
                                  "vlm_demo.adapters.load_adapter")
        if config is None:
            raise CheckpointError(f"{model_id}: no {CONFIG_NAME}")
        if isinstance(config, dict):
            config = cls.config_class.from_dict(config)
        return load_weights(cls, config, os.path.join(model_id, WEIGHTS_NAME), map_location)


def check_compatible(config: AdapterConfig, encoder: str, token_dim: int, llm: str, llm_hidden: int) -> None:
    """Refuse a checkpoint made for another encoder or LLM, naming both sides."""
    problems = []
    if config.encoder != encoder:
        problems.append(f"encoder: checkpoint '{config.encoder}' vs combination '{encoder}'")
    if config.token_dim != token_dim:
        problems.append(f"token width: checkpoint {config.token_dim} vs encoder {token_dim}")
    if config.llm != llm:
        problems.append(f"LLM: checkpoint '{config.llm}' vs combination '{llm}'")
    if config.llm_hidden != llm_hidden:
        problems.append(f"hidden size: checkpoint {config.llm_hidden} vs LLM {llm_hidden}")
    if problems:
        raise CheckpointError(f"adapter '{config.kind}' does not fit this combination: " + "; ".join(problems))


# Family name -> class. It is filled by `vlm_demo/adapters/__init__.py` (the place to register a family), which Python
# always runs before this module, and lives here so that a checkpoint can find its family without that package.
ADAPTERS: dict[str, type[Adapter]] = {}


def adapter_class(kind: str) -> type[Adapter]:
    """The registered class of an adapter family (a ValueError names the known ones)."""
    if kind not in ADAPTERS:
        raise ValueError(f"unknown adapter family '{kind}'; known: {', '.join(ADAPTERS)}")
    return ADAPTERS[kind]
