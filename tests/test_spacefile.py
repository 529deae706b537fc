"""Deployment manifests stay valid: the Spacefile deploy manifest, the Spaces front matter, app.py's address."""

from __future__ import annotations

import re

import pytest
import yaml
from app_helpers import ROOT, load_app_module

from vlm_demo.deploy.manifest import ManifestError, load_manifest

SPACES_HARDWARE = {"cpu-basic", "cpu-upgrade", "t4-small", "t4-medium", "l4x1", "l4x4", "a10g-small", "a10g-large",
                   "a10g-largex2", "a10g-largex4", "a100-large", "zero-a10g"}


def test_spacefile_is_a_valid_deploy_manifest():
    manifest = load_manifest(ROOT / "Spacefile")
    assert manifest.hardware in SPACES_HARDWARE and "mlp" in manifest.combinations
    assert not any(name.endswith("-swish") for name in manifest.combinations)
    assert {"VLM_DEMO_HUB_ALLOW", "VLM_DEMO_MEMORY_BUDGET_MB", "VLM_DEMO_TRUST_PROXY"} <= set(manifest.variables)
    first = (ROOT / "Spacefile").read_text().splitlines()[0]
    assert "Hugging Face Spaces" in first and "Deta" not in first


VALID = yaml.safe_load((ROOT / "Spacefile").read_text())


@pytest.mark.parametrize("change, message", [
    ({"hardware": "gpu-huge"}, "hardware 'gpu-huge' is not a Spaces hardware"),
    ({"hardware": "zero-a10g", "python_version": "3.11"}, "python_version '3.11' is not one ZeroGPU accepts"),
    ({"python_version": "2.7"}, "python_version '2.7' must be a Python 3 version"),
    ({"combinations": ["linear"]}, "'combinations' must include the default combination 'mlp'"),
    ({"combinations": ["mlp", "nope"]}, "combination 'nope' is not registered"),
    ({"combinations": ["mlp", "clip-mlp-qwen"]}, "combination 'clip-mlp-qwen' has no shipped checkpoint"),
    ({"weights": "model-repo"}, "weights 'model-repo' is not supported"),
    ({"variables": {"PORT": 1}}, "variable 'PORT' is set by Spaces itself"),
    ({"variables": {"lower": 1}}, "variable name 'lower' must be upper case"),
    ({"extra": 1}, "unknown key 'extra'"),
    ({"space": {"title": "x"}}, "'space' must map title and short_description"),
])
def test_a_bad_manifest_gets_one_line_naming_the_problem(tmp_path, change, message):
    path = tmp_path / "Spacefile"
    path.write_text(yaml.safe_dump({**VALID, **change}))
    with pytest.raises(ManifestError) as raised:
        load_manifest(path)
    assert str(raised.value).startswith(f"{path}: {message}") and "\n" not in str(raised.value)
    path.write_text("hardware: [unclosed")
    with pytest.raises(ManifestError, match="not valid YAML"):
        load_manifest(path)


def test_readme_front_matter_is_the_one_deploy_writes():
    from vlm_demo.deploy.build import front_matter as deployed

    assert front_matter() == deployed(load_manifest(ROOT / "Spacefile"))


def front_matter() -> dict:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.match(r"\A---\n(.*?)\n---\n", text, re.DOTALL)
    assert match, "README.md must start with the Spaces front matter"
    return yaml.safe_load(match[1])


def test_readme_front_matter_is_a_gradio_space():
    import gradio

    meta = front_matter()
    assert meta["sdk"] == "gradio" and meta["app_file"] == "app.py"
    pinned = re.search(r"^gradio==(\S+)$", (ROOT / "requirements.txt").read_text(), re.MULTILINE)[1]
    assert str(meta["sdk_version"]) == pinned == gradio.__version__
    major, minor = (int(part) for part in str(meta["python_version"]).split(".")[:2])
    assert (major, minor) >= (3, 10)
    assert meta["suggested_hardware"] in SPACES_HARDWARE
    assert meta["models"] and all(re.fullmatch(r"[\w.-]+/[\w.-]+", model) for model in meta["models"])
    assert "preload_from_hub" not in meta  # the weights the adapters need ship in the Space's own weights/ folder



@pytest.mark.parametrize("env, expected", [
    ({}, ("127.0.0.1", 7860)),
    ({"PORT": "8080"}, ("127.0.0.1", 8080)),
    ({"PORT": "8080", "GRADIO_SERVER_PORT": "9000", "GRADIO_SERVER_NAME": "0.0.0.0"}, ("0.0.0.0", 9000)),
])
def test_app_listens_where_the_environment_says(monkeypatch, env, expected):
    for name in ("PORT", "GRADIO_SERVER_PORT", "GRADIO_SERVER_NAME"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert load_app_module().server_address() == expected


def test_analytics_are_off_unless_asked(monkeypatch):
    monkeypatch.delenv("GRADIO_ANALYTICS_ENABLED", raising=False)
    load_app_module()
    import os

    assert os.environ["GRADIO_ANALYTICS_ENABLED"] == "False"
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "True")
    load_app_module()
    assert os.environ["GRADIO_ANALYTICS_ENABLED"] == "True"


@pytest.mark.parametrize("port", ["abc", "0", "70000"])
def test_a_port_that_is_not_a_port_number_is_one_line(monkeypatch, port):
    monkeypatch.delenv("GRADIO_SERVER_PORT", raising=False)
    monkeypatch.setenv("PORT", port)
    with pytest.raises(SystemExit, match="is not a port number"):
        load_app_module().server_address()


def test_a_busy_port_stops_the_app_with_one_line_before_anything_loads(monkeypatch):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        monkeypatch.setenv("GRADIO_SERVER_PORT", str(taken.getsockname()[1]))
        app = load_app_module()
        monkeypatch.setattr(app, "convert_packaged_llm", lambda: pytest.fail("loaded something"))
        with pytest.raises(SystemExit, match="cannot listen on 127.0.0.1:.*GRADIO_SERVER_PORT or PORT"):
            app.main([])
