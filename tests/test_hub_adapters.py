"""An adapter pushed with `train push` and loaded by hub id (Models tab) is offered in Chat and Compare while it stays
loaded: the round trip against a local folder standing in for the hub and a hub cache filled from it."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
from PIL import Image

from tests.test_spacefile import load_app_module
from tests.test_train_push import REPO, FakeHub
from tests.test_train_stages import _overrides, _run_stage
from train.config import load_config


def fill_hub_cache(cache: Path, repo_id: str, source: Path, repo_type: str = "model") -> str:
    """Lay a repository's files out in a Hugging Face cache as a download (or Spaces' preload_from_hub) leaves them:
    blobs by content hash, a snapshot of links per commit, refs/main naming the commit. Returns the commit."""
    files = sorted(p for p in source.rglob("*") if p.is_file())
    commit = hashlib.sha1(b"".join(p.read_bytes() for p in files)).hexdigest()
    repo = cache / f"{repo_type}s--{repo_id.replace('/', '--')}"
    for path in files:
        blob = repo / "blobs" / hashlib.sha256(path.read_bytes()).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, blob)
        link = repo / "snapshots" / commit / path.relative_to(source)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(blob)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return commit


@pytest.fixture
def offline_hub_cache(tmp_path, monkeypatch) -> Path:
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    return cache


def test_checkpoint_resolves_a_hub_id_once_from_the_cache(offline_hub_cache, tmp_path):
    from vlm_demo.adapters import CheckpointError, build_adapter
    from vlm_demo.checkpoint import Checkpoint

    folder = tmp_path / "pushed"
    build_adapter("linear", encoder="efficientnet-lite0", token_dim=1280, num_encoder_tokens=49,
                  llm="smollm2-135m-instruct", llm_hidden=576, num_tokens=1).save_pretrained(folder)
    commit = fill_hub_cache(offline_hub_cache, REPO, folder)
    checkpoint = Checkpoint.resolve(REPO)
    assert checkpoint.folder.name == commit and checkpoint.hub_id == REPO and checkpoint.lora is None
    assert checkpoint.header == {"proj.weight": (576, 1280), "proj.bias": (576,)}
    checkpoint.check("efficientnet-lite0", 1280, "smollm2-135m-instruct", 576)
    with pytest.raises(CheckpointError, match="LLM: checkpoint 'smollm2-135m-instruct' vs combination 'other'"):
        checkpoint.check("efficientnet-lite0", 1280, "other", 576)
    with pytest.raises(CheckpointError, match="someone/missing: not a local folder and not fetched from the hub"):
        Checkpoint.resolve("someone/missing")
    assert Checkpoint.resolve(folder).hub_id is None and Checkpoint.resolve(folder).config["kind"] == "linear"


def test_a_pushed_adapter_loaded_by_id_is_offered_in_chat_and_compare(tmp_path, monkeypatch, offline_hub_cache,
                                                                      tiny_llm_dir):
    from huggingface_hub import HfApi

    from train.evaluate import evaluate
    from train.push import push

    run = _overrides(tiny_llm_dir, tmp_path / "run", 'caption.llm_mode="lora"', "train.max_steps=2",
                     'caption.lora_targets=["q_proj","v_proj"]', 'name="tiny"')
    _run_stage("caption", run, tmp_path / "cache")
    evaluate(load_config(None, run), progress=False)
    from vlm_demo import combos, models_cache
    from vlm_demo.llms import LLMS, LLMSpec
    from vlm_demo.llms.loading import load_causal_lm
    from vlm_demo.ui import cards, chat, compare
    from vlm_demo.ui.pickers import adapter_choices

    hub = FakeHub(tmp_path / "hub")
    monkeypatch.setattr(HfApi, "create_repo", hub.create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", hub.upload_folder)
    push(load_config(None, run), REPO)
    fill_hub_cache(offline_hub_cache, REPO, hub.root / REPO)
    llm = str(tiny_llm_dir)  # the tiny LLM the adapter was trained with, registered like a packaged one
    monkeypatch.setitem(LLMS, llm, LLMSpec(llm, "", "tiny test LLM"))
    monkeypatch.setattr(models_cache, "load_llm", lambda name, **_: load_causal_lm(name, name))
    monkeypatch.setattr(models_cache, "_CACHE", models_cache.ModelCache())
    monkeypatch.setattr(combos, "_HUB_COMBOS", {})
    encoder = "efficientnet-lite0"
    assert all(value != f"hub:{REPO}" for _, value in adapter_choices(encoder, llm))

    status = cards.load_from_hub(REPO)[3]
    assert status.startswith(f"Loaded `{REPO}` (trained adapter + LoRA on the LLM)"), status
    offered = dict((value, label) for label, value in adapter_choices(encoder, llm))
    assert f"hub:{REPO}" in offered and "from the hub" in offered[f"hub:{REPO}"]
    assert f"hub:{REPO}" not in dict((v, k) for k, v in adapter_choices("dinov2-small", llm))
    picked = cards.pick_loaded(REPO)
    assert picked[1]["value"] == f"hub:{REPO}" and picked[2]["value"] == llm and REPO in picked[3]

    picture = Image.new("RGB", (64, 64), "red")
    monkeypatch.setattr(chat, "load_image", lambda _: picture)
    monkeypatch.setattr(compare, "load_image", lambda _: picture)
    answer = chat.caption_batch(["x.png"], "Describe this image.", encoder, f"hub:{REPO}", llm, 4)["captions"][0]
    assert answer["combination"] == f"hub:{REPO}" and answer["adapter_trained"] is True
    *_, (board, results) = compare.compare("x.png", "Describe this image.", [f"hub:{REPO}", "linear"], encoder, llm,
                                           4, 0.0, 1.0, 0)
    assert [(r["trained"], r["llm_lora"]) for r in results] == [(True, True), (False, False)] and "vd-card" in board

    monkeypatch.setattr(models_cache, "_CACHE", models_cache.ModelCache())  # evicted, as the budget would
    assert all(value != f"hub:{REPO}" for _, value in adapter_choices(encoder, llm))  # offered while it stays loaded
    app = load_app_module()
    assert app.hub_adapters(["--checkpoint", REPO]) == [REPO]
    monkeypatch.setenv("VLM_DEMO_HUB_ADAPTERS", f"{REPO}, other/one")
    assert app.hub_adapters([]) == [REPO, "other/one"]
    app.load_hub_adapters([REPO])  # python app.py --checkpoint owner/name, or the Space variable: offered again
    assert f"hub:{REPO}" in dict((v, k) for k, v in adapter_choices(encoder, llm))
