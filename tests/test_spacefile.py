"""Deployment manifests stay valid: the Deta Spacefile, the Hugging Face Spaces front matter, app.py's address."""

from __future__ import annotations

import importlib.util
import re

import pytest
import yaml
from app_helpers import ROOT

DETA_ENGINES = {"python3.9", "python3.8", "nodejs16", "static", "react", "vue", "svelte", "next", "nuxt",
                "svelte-kit", "custom"}
SPACES_HARDWARE = {"cpu-basic", "cpu-upgrade", "t4-small", "t4-medium", "l4x1", "l4x4", "a10g-small", "a10g-large",
                   "a10g-largex2", "a10g-largex4", "a100-large", "zero-a10g"}


def test_spacefile_is_a_valid_deta_manifest():
    spacefile = yaml.safe_load((ROOT / "Spacefile").read_text())
    assert set(spacefile) <= {"v", "app_name", "icon", "micros"} and spacefile["v"] == 0
    micros = spacefile["micros"]
    assert isinstance(micros, list) and len(micros) == 1
    micro = micros[0]
    assert set(micro) <= {"name", "src", "engine", "primary", "run", "dev", "commands", "include", "public_routes",
                          "presets", "path", "actions"}
    assert re.fullmatch(r"[a-z0-9-]+", micro["name"]) and micro["src"] == "."
    assert micro["engine"] in DETA_ENGINES and micro["engine"].startswith("python")
    assert micro["run"] == "python app.py" and (ROOT / "app.py").is_file()
    assert micro.get("primary", True) is True
    assert all(isinstance(route, str) and route.startswith("/") for route in micro["public_routes"])
    for variable in micro.get("presets", {}).get("env", []):
        assert set(variable) <= {"name", "description", "default"} and re.fullmatch(r"[A-Z_][A-Z0-9_]*",
                                                                                     variable["name"])
        assert variable["name"] not in ("PORT", "GRADIO_SERVER_PORT")  # Deta sets $PORT itself


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
    assert set(meta.get("preload_from_hub", [])) <= set(meta["models"])


def load_app_module():
    spec = importlib.util.spec_from_file_location("vlm_demo_app", ROOT / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
