"""One adapter checkpoint, resolved once from a folder or a hub id: its config, weights header, LoRA and encoder
weights, the one compatibility check against a combination, and loading its adapter and fine-tuned encoder."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from functools import cache, cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vlm_demo.adapters.base import (
    CONFIG_NAME,
    ENCODER_WEIGHTS,
    LORA_FOLDER,
    WEIGHTS_NAME,
    Adapter,
    AdapterConfig,
    CheckpointError,
    adapter_class,
    check_compatible,
    check_weights_fit,
    header_shapes,
    load_weights,
)
from vlm_demo.hub import HUB_ID

if TYPE_CHECKING:
    from torch import nn

    from vlm_demo.encoders import VisionEncoder

HUB_PATTERNS = [CONFIG_NAME, WEIGHTS_NAME, ENCODER_WEIGHTS, f"{LORA_FOLDER}/*", "README.md", "*.png", "*.json"]


@dataclass
class Checkpoint:
    """A checkpoint folder on this machine (a hub id is downloaded into the hub cache first, once)."""

    source: str  # what the user gave: a folder or owner/name
    folder: Path
    hub_id: str | None = None
    revision: str | None = None
    config: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def resolve(cls, path_or_id: Checkpoint | str | Path, revision: str | None = None,
                local_only: bool = False) -> Checkpoint:
        """The one place that decides between a folder and a hub id: a folder as it is, else (unless `local_only`)
        a hub repo's checkpoint files (safetensors and texts only) from the hub or its cache. A Checkpoint is
        returned as it is; a missing, damaged or config-less checkpoint is a CheckpointError."""
        if isinstance(path_or_id, Checkpoint):
            return path_or_id
        source = str(path_or_id)
        path = Path(source)
        if path.exists() or local_only or not HUB_ID.match(source):
            if not path.is_dir():
                raise CheckpointError(f"{source}: an adapter checkpoint is a folder with {CONFIG_NAME} and "
                                      f"{WEIGHTS_NAME}, or a hub id (owner/name)")
            return cls(source, path, config=_read_config(path))
        folder = _snapshot(source, revision)
        return cls(source, folder, hub_id=source, revision=revision, config=_read_config(folder))

    @property
    def name(self) -> str:
        return self.hub_id or self.folder.name

    @property
    def weights(self) -> Path:
        return self.folder / WEIGHTS_NAME

    @cached_property
    def header(self) -> dict[str, tuple[int, ...]]:
        """Tensor names and shapes of the adapter weights (read from the safetensors header only)."""
        return header_shapes(str(self.weights))

    @property
    def lora(self) -> str | None:
        """The LLM LoRA trained with the adapter (its `lora/` subfolder, peft format), or None."""
        folder = self.folder / LORA_FOLDER
        return str(folder) if (folder / "adapter_config.json").is_file() else None

    @property
    def encoder_weights(self) -> str | None:
        """The encoder weights fine-tuned with the adapter (its `encoder.safetensors`), or None."""
        file = self.folder / ENCODER_WEIGHTS
        return str(file) if file.is_file() else None

    @property
    def encoder(self) -> str:
        return self._part("encoder")

    @property
    def llm(self) -> str:
        return self._part("llm")

    def _part(self, key: str) -> str:
        value = self.config.get(key)
        if not value or not isinstance(value, str):
            raise CheckpointError(f"{self.source}: its {key} is not recorded in {CONFIG_NAME}")
        return value

    def adapter_config(self) -> AdapterConfig:
        """The config as the adapter family's dataclass (every field checked)."""
        try:
            return adapter_class(self.config["kind"]).config_class.from_dict(self.config)
        except (CheckpointError, ValueError) as error:
            raise CheckpointError(f"{self.source}: {error}") from None

    def check(self, encoder: str, token_dim: int, llm: str, llm_hidden: int) -> None:
        """The one compatibility check: refuse this checkpoint for another combination (names both sides) or
        weights that do not fit its config."""
        config = self.adapter_config()
        check_compatible(config, encoder, token_dim, llm, llm_hidden)
        check_weights_fit(adapter_class(config.kind), config, self.header)

    def adapter(self, map_location: str = "cpu") -> Adapter:
        """The trained adapter in eval mode (the weights checked against the config before anything is allocated)."""
        config = self.adapter_config()
        return load_weights(adapter_class(config.kind), config, self.weights, map_location).eval()

    def load_encoder_weights(self, encoder: nn.Module) -> bool:
        """Load the encoder weights fine-tuned with the adapter into `encoder` (in place, on its device, every tensor
        required); False when the checkpoint has none."""
        if not self.encoder_weights:
            return False
        from safetensors.torch import load_model

        load_model(encoder, self.encoder_weights, strict=True, device=str(next(encoder.parameters()).device))
        return True

    def vision_encoder(self, encoder: VisionEncoder | None = None) -> VisionEncoder:
        """The encoder the adapter runs on: `encoder` (possibly shared, so never changed) or a new one of the encoder
        the config names; with fine-tuned encoder weights, a private copy holding them, frozen."""
        if encoder is None:
            from vlm_demo.encoders import build_encoder

            encoder = build_encoder(self.encoder)
        elif self.encoder_weights:
            encoder = copy.deepcopy(encoder)
        if self.load_encoder_weights(encoder):
            encoder.eval().requires_grad_(False)
        return encoder

    def files(self) -> list[Path]:
        """Every file of the checkpoint that a copy (deploy) must carry, relative paths kept."""
        return sorted(p for p in self.folder.rglob("*") if p.is_file() and not p.name.startswith("."))


def _read_config(folder: Path) -> dict[str, Any]:
    """A checkpoint folder's config.json, with a 'kind' naming the adapter family."""
    config_file = folder / CONFIG_NAME
    if not config_file.is_file():
        raise CheckpointError(f"{folder}: no {CONFIG_NAME} in this folder; is it an adapter checkpoint?")
    try:
        values = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{config_file}: not valid JSON ({error})") from None
    if not isinstance(values, dict) or not isinstance(values.get("kind"), str):
        raise CheckpointError(f"{config_file}: has no 'kind' field naming the adapter family")
    return values


@cache  # a training run asks for its starting checkpoint in several stages; the hub is asked once a process
def _snapshot(repo_id: str, revision: str | None) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=HUB_PATTERNS))
    except Exception as error:  # noqa: BLE001 - not found, offline, gated: one line whatever the type
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise CheckpointError(f"{repo_id}: not a local folder and not fetched from the hub ({first})") from None
