"""The adapter interface: encoder features in, LLM-width pseudo-tokens out; config.json + model.safetensors."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import torch
from huggingface_hub import PyTorchModelHubMixin, hf_hub_download
from safetensors import SafetensorError
from safetensors.torch import load_model
from torch import nn

from vlm_demo.encoders.base import EncoderOutput

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
LORA_FOLDER = "lora"  # optional: a peft LoRA of the LLM trained together with the adapter


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
        known = {item.name for item in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise CheckpointError(f"config for '{cls.__name__}' has unknown keys: {', '.join(unknown)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def needs(self) -> frozenset[str]:
        """What this adapter reads beyond image tokens (keys of `vlm_demo.encoders.NEEDS`); only some encoders give
        them."""
        return frozenset()


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

    def forward(self, features: EncoderOutput) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def start_from(self, encoder: Any, llm: Any) -> None:
        """Initialise a new adapter from its encoder and LLM where the family can (e.g. from class names)."""

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    @classmethod
    def _from_pretrained(
        cls,
        *,
        model_id: str,
        revision: str | None = None,
        cache_dir: str | Path | None = None,
        force_download: bool = False,
        local_files_only: bool = False,
        token: str | bool | None = None,
        map_location: str = "cpu",
        config: dict[str, Any] | AdapterConfig | None = None,
        **_: Any,
    ) -> Adapter:
        if config is None:
            raise CheckpointError(f"{model_id}: no {CONFIG_NAME}")
        model = cls(config)
        if os.path.isdir(model_id):
            weights = os.path.join(model_id, WEIGHTS_NAME)
        else:
            weights = hf_hub_download(model_id, WEIGHTS_NAME, revision=revision, cache_dir=cache_dir,
                                      force_download=force_download, token=token, local_files_only=local_files_only)
        if not os.path.isfile(weights):
            raise CheckpointError(f"{model_id}: no {WEIGHTS_NAME} (only safetensors checkpoints are read)")
        try:
            missing, unexpected = load_model(model, weights, strict=False, device=map_location)
        except (SafetensorError, OSError, RuntimeError) as error:
            raise CheckpointError(f"{weights}: not a readable checkpoint for this adapter ({error})") from None
        if missing or unexpected:
            raise CheckpointError(
                f"{weights}: weights do not fit a '{model.config.kind}' adapter with this config "
                f"(missing: {missing[:3]}, unexpected: {unexpected[:3]})"
            )
        return model


def read_config(path_or_id: str | Path) -> dict[str, Any]:
    """Read an adapter checkpoint's config.json from a folder or a hub repo id."""
    path = Path(path_or_id)
    if path.is_dir():
        config_file = path / CONFIG_NAME
        if not config_file.is_file():
            raise CheckpointError(f"{path}: no {CONFIG_NAME} in this folder; is it an adapter checkpoint?")
    elif path.exists():
        raise CheckpointError(f"{path}: an adapter checkpoint is a folder with {CONFIG_NAME} and {WEIGHTS_NAME}")
    else:
        try:
            config_file = Path(hf_hub_download(str(path_or_id), CONFIG_NAME))
        except Exception as error:  # noqa: BLE001 - hub errors come in many types
            raise CheckpointError(f"{path_or_id}: not a local folder and not reachable on the hub ({error})") from None
    try:
        values = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{config_file}: not valid JSON ({error})") from None
    if not isinstance(values, dict) or "kind" not in values:
        raise CheckpointError(f"{config_file}: has no 'kind' field naming the adapter family")
    return values


def lora_folder(path_or_id: str | Path) -> str | None:
    """The LLM LoRA trained together with a checkpoint (its `lora/` subfolder, peft format), or None."""
    path = Path(path_or_id)
    if path.is_dir():
        folder = path / LORA_FOLDER
        return str(folder) if (folder / "adapter_config.json").is_file() else None
    try:
        files = [hf_hub_download(str(path_or_id), f"{LORA_FOLDER}/{name}")
                 for name in ("adapter_config.json", "adapter_model.safetensors")]
    except Exception:  # noqa: BLE001 - no LoRA in the repo, or the hub cannot say
        return None
    return str(Path(files[0]).parent)


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
