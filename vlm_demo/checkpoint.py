"""One adapter checkpoint, resolved once from a folder or a hub id: its config, weights header, LoRA and encoder."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from vlm_demo.adapters.base import (
    CONFIG_NAME,
    ENCODER_WEIGHTS,
    LORA_FOLDER,
    WEIGHTS_NAME,
    AdapterConfig,
    CheckpointError,
    check_compatible,
    encoder_weights,
    header_shapes,
    lora_folder,
    read_config,
)
from vlm_demo.hub import HUB_ID

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
    def resolve(cls, path_or_id: str | Path, revision: str | None = None) -> Checkpoint:
        """A folder as it is, or a hub repo's checkpoint files (safetensors and texts only) from the hub or its
        cache; a damaged or missing config is a CheckpointError."""
        source = str(path_or_id)
        path = Path(source)
        if path.exists() or not HUB_ID.match(source):
            if not path.is_dir():
                raise CheckpointError(f"{source}: an adapter checkpoint is a folder with {CONFIG_NAME} and "
                                      f"{WEIGHTS_NAME}, or a hub id (owner/name)")
            return cls(source, path, config=read_config(path))
        folder = _snapshot(source, revision)
        return cls(source, folder, hub_id=source, revision=revision, config=read_config(folder))

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
        """The LLM LoRA trained with the adapter (peft folder), or None."""
        return lora_folder(self.folder)

    @property
    def encoder_weights(self) -> str | None:
        """The encoder weights fine-tuned with the adapter, or None."""
        return encoder_weights(self.folder)

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
        from vlm_demo.adapters import adapter_class

        try:
            return adapter_class(self.config["kind"]).config_class.from_dict(self.config)
        except (CheckpointError, ValueError) as error:
            raise CheckpointError(f"{self.source}: {error}") from None

    def check(self, encoder: str, token_dim: int, llm: str, llm_hidden: int) -> None:
        """Refuse this checkpoint for another combination (names both sides) or weights that do not fit its config."""
        from vlm_demo.adapters import adapter_class
        from vlm_demo.adapters.base import check_weights_fit

        config = self.adapter_config()
        check_compatible(config, encoder, token_dim, llm, llm_hidden)
        check_weights_fit(adapter_class(config.kind), config, str(self.weights))

    def files(self) -> list[Path]:
        """Every file of the checkpoint that a copy (deploy) must carry, relative paths kept."""
        return sorted(p for p in self.folder.rglob("*") if p.is_file() and not p.name.startswith("."))


def _snapshot(repo_id: str, revision: str | None) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=HUB_PATTERNS))
    except Exception as error:  # noqa: BLE001 - not found, offline, gated: one line whatever the type
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise CheckpointError(f"{repo_id}: not a local folder and not fetched from the hub ({first})") from None
