"""`python -m train push` to a local folder standing in for the hub (no network), the card's hub metadata, and the
app loading an adapter by hub id (refused with the reason when the hub cannot be reached)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import HfApi, ModelCard
from huggingface_hub.errors import LocalEntryNotFoundError
from PIL import Image

from tests.test_train_stages import _overrides, _run_stage
from train.config import load_config

ROOT = Path(__file__).resolve().parent.parent
REPO = "someone/tiny-adapter"


class FakeHub:
    """HfApi.create_repo / upload_folder, snapshot_download and hf_hub_download, served from a local folder."""

    def __init__(self, root: Path) -> None:
        self.root, self.commits = root, []

    def create_repo(self, repo_id, private=False, exist_ok=False, **kwargs):
        (self.root / repo_id).mkdir(parents=True, exist_ok=exist_ok)
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, repo_id, folder_path, commit_message="", **kwargs):
        shutil.copytree(folder_path, self.root / repo_id, dirs_exist_ok=True)
        self.commits.append(commit_message)

    def snapshot(self, repo_id, **kwargs):
        if not (self.root / repo_id).is_dir():
            raise LocalEntryNotFoundError(f"{repo_id} is not on the hub")
        return str(self.root / repo_id)

    def download(self, repo_id, filename, **kwargs):
        path = self.root / repo_id / filename
        if not path.is_file():
            raise LocalEntryNotFoundError(f"{filename} not in {repo_id}")
        return str(path)


@pytest.fixture
def hub(tmp_path, monkeypatch) -> FakeHub:
    fake = FakeHub(tmp_path / "hub")
    monkeypatch.setattr(HfApi, "create_repo", fake.create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", fake.upload_folder)
    monkeypatch.setattr("huggingface_hub.snapshot_download", fake.snapshot)  # a checkpoint's one hub look-up
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)  # anything real fails at once
    return fake


@pytest.fixture
def evaluated_run(tiny_llm_dir, tmp_path) -> list[str]:
    from train.evaluate import evaluate

    overrides = _overrides(tiny_llm_dir, tmp_path / "run", 'caption.llm_mode="lora"', "train.max_steps=2",
                           'caption.lora_targets=["q_proj","v_proj"]', 'name="tiny"')
    _run_stage("caption", overrides, tmp_path / "cache")
    evaluate(load_config(None, overrides), progress=False)
    return overrides


def test_push_uploads_weights_lora_and_a_card_with_metrics(hub, evaluated_run, capsys):
    from train.__main__ import main

    assert main(["push", "--repo-id", REPO, *evaluated_run]) == 0
    assert capsys.readouterr().out.strip() == f"https://huggingface.co/{REPO}"
    pushed = hub.root / REPO
    assert {"config.json", "model.safetensors", "README.md", "loss_curve.png", "eval.json"} <= {
        p.name for p in pushed.iterdir()}
    assert (pushed / "lora" / "adapter_model.safetensors").is_file()
    card = ModelCard.load(pushed / "README.md")
    assert card.data.library_name == "vlm_demo" and card.data.pipeline_tag == "image-to-text"
    assert {"bleu4", "cider"} <= {result.metric_type for result in card.data.eval_results}
    assert "## Held-out results" in card.text and hub.commits == ["tiny adapter: efficientnet-lite0 -> mlp -> " +
                                                                 load_config(None, evaluated_run).model.llm]


def test_push_refuses_a_run_without_metrics_or_a_bad_repo_id(tiny_llm_dir, tmp_path, hub, capsys):
    from train.__main__ import main

    overrides = _overrides(tiny_llm_dir, tmp_path / "run", "train.max_steps=1")
    _run_stage("caption", overrides, tmp_path / "cache")
    assert main(["push", "--repo-id", REPO, *overrides]) == 2
    assert "run `python -m train eval` first" in capsys.readouterr().err
    assert main(["push", "--repo-id", "../escape", *overrides]) == 2
    assert "--repo-id must look like owner/name" in capsys.readouterr().err
    assert not (hub.root / REPO).exists()


def test_an_adapter_pushed_to_the_hub_loads_by_id_with_its_lora(hub, evaluated_run):
    from train.push import push
    from vlm_demo.pipeline import VisionLanguageModel

    push(load_config(None, evaluated_run), REPO)
    vlm = VisionLanguageModel.from_checkpoint(REPO)
    assert vlm.trained and vlm.lora in vlm.llm.loras and vlm.name == f"checkpoint:{REPO}"
    assert len(vlm.caption([Image.new("RGB", (64, 64), "red")])) == 1


def test_loading_by_hub_id_offline_is_refused_with_the_reason(tmp_path):
    code = ("from vlm_demo.pipeline import VisionLanguageModel\n"
            "from vlm_demo.adapters import CheckpointError\n"
            "try:\n    VisionLanguageModel.from_checkpoint('someone/not-cached')\n"
            "except CheckpointError as error:\n    print(error)\n")
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120)
    message = result.stdout.strip()
    assert message.startswith("someone/not-cached: not a local folder and not fetched from the hub"), result.stderr
    assert "Cannot find an appropriate cached snapshot folder" in message and "\n" not in message


def test_models_tab_fetches_a_hub_adapter_card_and_loads_it_by_id(hub, monkeypatch):
    from torch import nn

    from vlm_demo import models_cache
    from vlm_demo.adapters import build_adapter
    from vlm_demo.ui import cards

    build_adapter("linear", encoder="efficientnet-lite0", token_dim=1280, num_encoder_tokens=49,
                  llm="smollm2-135m-instruct", llm_hidden=576, num_tokens=1).save_pretrained(hub.root / REPO)
    (hub.root / REPO / "README.md").write_text("---\nlibrary_name: vlm_demo\n---\n# A card from the hub\n")
    monkeypatch.setattr("huggingface_hub.hf_hub_download", hub.download)
    monkeypatch.setattr("huggingface_hub.snapshot_download", hub.snapshot)
    combos = []

    class StandIn:
        status, adapter = "trained adapter", nn.Linear(2, 2)

        @classmethod
        def from_combo(cls, combo, llm=None, encoder=None):
            combos.append(combo)
            return cls()

    monkeypatch.setattr(models_cache, "VisionLanguageModel", StandIn)
    monkeypatch.setattr(models_cache, "build_encoder", lambda name: nn.Linear(2, 2))
    monkeypatch.setattr(models_cache, "load_llm", lambda name, **kwargs: nn.Linear(2, 2))
    monkeypatch.setattr(models_cache, "_CACHE", models_cache.ModelCache())
    facts, text, _, status = cards.load_from_hub(f" {REPO} ")
    assert "A card from the hub" in text and "efficientnet-lite0" in facts
    assert status.startswith(f"Loaded `{REPO}` (trained adapter)")
    assert [(c.checkpoint, c.encoder, c.adapter, c.llm) for c in combos] == [
        (REPO, "efficientnet-lite0", "linear", "smollm2-135m-instruct")]
    assert combos[0].name == f"hub:{REPO}"
    assert "is not a hub model id" in cards.load_from_hub("/etc/passwd")[3]
    config = json.loads((hub.root / REPO / "config.json").read_text())
    other = hub.root / "someone" / "big-llm-adapter"
    shutil.copytree(hub.root / REPO, other)
    (other / "config.json").write_text(json.dumps({**config, "llm": "someone/a-70b-llm"}))
    assert "the app loads only its registered ones" in cards.load_from_hub("someone/big-llm-adapter")[3]
    assert len(combos) == 1
    assert cards.load_from_hub("someone/missing")[3].startswith(
        "\u26a0 someone/missing: not a local folder and not fetched from the hub (someone/missing is not on the hub)")
