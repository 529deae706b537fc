"""The trainer's default model is the app's default combination, named once in vlm_demo/combos.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from train.config import ModelConfig, load_config
from vlm_demo import combos

ROOT = Path(__file__).resolve().parent.parent


def parts(model) -> tuple[str, str, str]:
    return model.encoder, model.adapter, model.llm


def test_the_default_model_is_the_default_combination():
    default = combos.COMBOS[combos.DEFAULT_COMBO]
    assert parts(ModelConfig()) == parts(load_config(None).model) == parts(default)
    assert ModelConfig().adapter_options == {}  # the family's own defaults, not the shipped checkpoint's options


def test_the_default_model_follows_the_combination_named_default(monkeypatch):
    monkeypatch.setitem(combos.COMBOS, combos.DEFAULT_COMBO, combos.COMBOS["linear"])
    assert parts(load_config(None, ['model.llm="qwen2.5-0.5b-instruct"']).model) == \
        (combos.COMBOS["linear"].encoder, "linear", "qwen2.5-0.5b-instruct")


def test_reading_the_config_module_imports_no_model_code():
    code = "import sys, train.config; print(sorted({'torch', 'vlm_demo.combos'} & set(sys.modules)))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert run.stdout.strip() == "[]"  # the default combination is looked up when a config is made
