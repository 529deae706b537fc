"""Push a trained adapter to the hub: weights, the LLM's LoRA if any, and the card (base models, data, metrics)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from huggingface_hub import HfApi, ModelCard
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

from train.card import assemble
from train.config import TrainConfig
from vlm_demo.adapters import CheckpointError
from vlm_demo.checkpoint import Checkpoint
from vlm_demo.hub import HUB_ID


def trained_adapter(folder: Path) -> bool:
    """Whether a run's adapter folder holds a checkpoint and its weights (a folder: never looked up on the hub)."""
    try:
        return Checkpoint.resolve(folder, local_only=True).weights.is_file()
    except CheckpointError:
        return False


def push(config: TrainConfig, repo_id: str, private: bool = False, token: str | None = None) -> str:
    """Upload output_dir's adapter as `repo_id` (created if needed); returns the repo's URL. The app then loads it
    by id: `python -m vlm_demo caption --checkpoint owner/name` or the Models tab."""
    if not HUB_ID.match(repo_id):
        raise ValueError(f"--repo-id must look like owner/name, got '{repo_id}'")
    output = Path(config.output_dir)
    if not trained_adapter(output / "adapter"):
        raise FileNotFoundError(f"{output / 'adapter'}: no trained adapter to push (train it first)")
    if not (output / "eval.json").is_file():
        raise FileNotFoundError(f"{output / 'eval.json'}: missing; run `python -m train eval` first (the card "
                                "carries its metrics)")
    api = HfApi(token=token)
    with tempfile.TemporaryDirectory(prefix="vlm-demo-push-") as folder:
        assemble(config, Path(folder))
        card = ModelCard.load(Path(folder) / "README.md")
        if not card.data.get("eval_results") and not card.data.get("model-index"):
            raise ValueError("the card has no metrics to publish; check eval.json")
        try:
            url = api.create_repo(repo_id, private=private, exist_ok=True)
            api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message=(
                f"{config.name} adapter: {config.model.encoder} -> {config.model.adapter} -> {config.model.llm}"))
        except (HfHubHTTPError, OfflineModeIsEnabled, OSError) as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ValueError(f"push to {repo_id} failed: {first}") from None
    return str(url)
