"""The leaderboard of shipped adapters (vlm_demo/leaderboard.py): read from config, weight headers, eval.json and
training.json through vlm_demo.cards (never the card's text), the same figures as the shipped cards' metadata,
README.md's table kept by `python -m train leaderboard`, and the Models and Compare tabs showing it. Nothing is trained
or loaded."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from vlm_demo import leaderboard as lb
from vlm_demo.combos import ADAPTERS_DIR, Combo

ROOT = Path(__file__).resolve().parent.parent
SWISH_MLP = "efficientnet-lite0-swish--mlp--smollm2-135m-instruct"
OLD_CARD = """---
license: apache-2.0
---
# `linear` adapter

- Trainable parameters: 737,856

## Training
Data: train splits only.

- **align (linear-align)**: Earth Mover's Distance (POT, exact) between the adapter's tokens and the caption's token \
embeddings; no LLM forward; data shapes (1500 images); 294 steps of batch ? (lr 0.001) from a training set of 4700 \
samples, 0.2 min on cpu
- **caption (linear-caption)**: cross-entropy on the answer tokens through the LLM with LoRA (r=8, alpha=32, dropout \
0.1, on q_proj) trained together with the adapter; data shapes (1500 images); 350 steps of batch 8 (lr 0.001) from a \
training set of 4700 samples, 29.1 min on cpu

## Held-out results (test splits: shapes (100))

| metric | value |
| --- | --- |
| shapes captions: colour and shape both right (1 object) | 0.100 |
| digits accuracy, class named (thesis) | 0.410 |

## Known limits
"""


def _folder(root: Path, readme: str, name: str = "efficientnet-lite0--linear--smollm2-135m-instruct") -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"kind": "linear", "encoder": "efficientnet-lite0",
                                                    "llm": "smollm2-135m-instruct", "token_dim": 1280,
                                                    "llm_hidden": 576, "num_tokens": 2}))
    header = json.dumps({"proj.weight": {"dtype": "F32", "shape": [1152, 1280], "data_offsets": [0, 4]}}).encode()
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 4)
    (folder / "README.md").write_text(readme)
    return folder


def test_every_shipped_adapter_is_on_the_leaderboard_with_recipe_scores_and_minutes():
    entries = {entry.name: entry for entry in lb.leaderboard()}
    assert set(entries) == {folder.name for folder in ADAPTERS_DIR.iterdir() if (folder / "config.json").is_file()}
    for entry in entries.values():
        assert entry.stages and entry.minutes and entry.image_tokens and entry.parameters and entry.main_score
    mlp = entries[SWISH_MLP]
    assert (mlp.family, mlp.encoder, mlp.image_tokens, mlp.parameters) == ("mlp", "efficientnet-lite0-swish", 49,
                                                                          3_397_952 + 921_600)
    assert mlp.recipe == "align 2940 \u2192 caption 1200 frozen \u2192 caption 600 LoRA"
    assert mlp.minutes == pytest.approx(6.6 + 71.8 + 40.0)
    assert mlp.main_score == ("shapes colour + shape", 0.6) and mlp.score("shapes VQA") == 0.485
    best = [entry.score("shapes colour + shape") for entry in lb.leaderboard()]
    assert best == sorted(best, reverse=True)


def _records(folder: Path) -> None:
    """training.json and eval.json as shipping writes them: a LoRA caption stage trained on a GPU after an align."""
    stages = {"align (linear-align)": {"stage": "align", "steps": 294, "batch_size": 16, "train_seconds": 12,
                                       "trainable_parameters": 737_856, "device": "cpu"},
              "caption (linear-caption)": {"stage": "caption", "steps": 350, "batch_size": 8, "train_seconds": 1746,
                                           "trainable_parameters": 800_000, "device": "cuda"}}
    runs = {"align (linear-align)": {"stage": "align", "train": {"lr": 0.001}},
            "caption (linear-caption)": {"stage": "caption", "caption": {"llm_mode": "lora"}, "train": {"lr": 5e-4}}}
    (folder / "training.json").write_text(json.dumps({"stages": stages, "runs": runs}))
    (folder / "eval.json").write_text(json.dumps({"digits_accuracy": {"lenient": 0.52}, "photos_object_named": {}}))


def test_figures_come_from_eval_and_training_json_never_from_the_card_text(tmp_path):
    folder = _folder(tmp_path, OLD_CARD)  # its text says other numbers: nothing reads them
    _records(folder)
    entry = lb.read_entry(folder)
    assert [(s.stage, s.run, s.steps, s.batch, s.lr, s.llm_mode, s.minutes, s.device) for s in entry.stages] == [
        ("align", "linear-align", 294, 16, 0.001, "none", 0.2, "cpu"),
        ("caption", "linear-caption", 350, 8, 5e-4, "lora", 29.1, "cuda")]
    assert entry.recipe == "align 294 \u2192 caption 350 LoRA (on cuda)" and entry.minutes == pytest.approx(29.3)
    assert entry.parameters == 800_000 and entry.image_tokens == 2
    assert entry.score("digits") == 0.52 and entry.score("photos") is None and entry.score("textiles") is None


def test_a_folder_without_a_card_still_gets_a_row_with_dashes(tmp_path):
    folder = _folder(tmp_path, "")
    (folder / "README.md").unlink()
    entry = lb.read_entry(folder)
    assert entry.recipe == "not recorded" and entry.minutes is None and entry.parameters == 1152 * 1280
    row = lb.markdown([entry]).splitlines()[-1]
    assert row.startswith("| linear | linear | efficientnet-lite0 |") and row.count("\u2014") == len(lb.SCORES) + 1


def test_rows_name_the_combination_that_runs_the_checkpoint_and_mark_the_default():
    from vlm_demo.combos import COMBOS

    assert lb.combination_of(COMBOS["default"].checkpoint).endswith(" (default)")
    assert lb.combination_of(COMBOS["query"].checkpoint) == "query"
    assert lb.combination_of("someone--mlp--elses") == "someone--mlp--elses"


def test_the_leaderboard_shows_the_figures_the_shipped_card_carries_for_the_hub():
    from vlm_demo.cards import card_figures, read_card

    source = ADAPTERS_DIR / SWISH_MLP
    card = read_card(source)
    assert card.data.get("training")[2] == {"stage": "caption", "run": "mlp-lora", "steps": 600, "batch": 8,
                                            "lr": 0.0005, "llm_mode": "lora", "minutes": 40.0, "device": "cpu",
                                            "trainable_parameters": 4_319_552}
    entry = lb.read_entry(source)
    assert card_figures(card).metrics == pytest.approx(entry.metrics, abs=1e-4) and entry.score("shapes VQA") == 0.485
    assert card_figures(card).stages == entry.stages


def test_readme_leaderboard_is_up_to_date_with_the_shipped_adapters():
    from train.leaderboard import README, current_readme

    assert current_readme() == README.read_text(encoding="utf-8"), (
        "README.md's leaderboard differs from assets/adapters: run `python -m train leaderboard` and commit README.md")


def test_leaderboard_command_checks_then_rewrites_a_stale_readme_table(tmp_path, capsys):
    from train.__main__ import main

    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\n{lb.README_START}\n| old | table |\n{lb.README_END}\n\nMore text.\n")
    assert main(["leaderboard", "--check", "--readme", str(readme)]) == 1
    assert "run `python -m train leaderboard`" in capsys.readouterr().err
    assert main(["leaderboard", "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "| old |" not in text and text.endswith(f"{lb.README_END}\n\nMore text.\n") and lb.NOTE in text
    assert main(["leaderboard", "--check", "--readme", str(readme)]) == 0
    readme.write_text("# No markers\n")
    assert main(["leaderboard", "--readme", str(readme)]) == 2


def test_models_tab_leaderboard_keeps_numbers_as_numbers_so_columns_sort_by_value(tmp_path, monkeypatch):
    from vlm_demo.ui import cards

    _records(_folder(tmp_path, OLD_CARD))
    monkeypatch.setattr(lb, "ADAPTERS_DIR", tmp_path)
    table = cards.leaderboard_table()
    assert table["headers"] == lb.HEADERS
    (row,) = table["data"]
    values = dict(zip(lb.HEADERS, row, strict=True))
    assert values["trainable params (M)"] == 0.8 and values["image tokens"] == 2 and values["digits"] == 0.52
    assert values["recipe (stage steps, LLM)"] == "align 294 \u2192 caption 350 LoRA (on cuda)"
    assert values["photos"] is None


def test_compare_columns_name_their_recipe_and_held_out_score_or_say_untrained(tmp_path):
    from vlm_demo.ui.compare import UNTRAINED, column_facts, render

    shipped = column_facts(Combo("mlp", "efficientnet-lite0-swish", "mlp", "smollm2-135m-instruct",
                                 checkpoint=SWISH_MLP))
    assert shipped == {"recipe": "align 2940 \u2192 caption 1200 frozen \u2192 caption 600 LoRA",
                       "held_out": "held-out shapes colour + shape 0.60"}
    untrained = column_facts(Combo("perceiver", "efficientnet-lite0-swish", "perceiver", "smollm2-135m-instruct"))
    assert untrained == {"recipe": UNTRAINED, "held_out": None}
    copy = tmp_path / "copy"
    shutil.copytree(ADAPTERS_DIR / SWISH_MLP, copy, ignore=shutil.ignore_patterns("*.safetensors", "lora"))
    assert column_facts(Combo("local", "efficientnet-lite0-swish", "mlp", "smollm2-135m-instruct",
                              checkpoint=str(copy)))["recipe"] == shipped["recipe"]
    columns = [{"adapter": "mlp", "trained": True, "caption": "A red circle", **shipped},
               {"adapter": "perceiver", "trained": False, "caption": "A", **untrained}]
    board = render(columns, [])
    assert "caption 600 LoRA \u00b7 <b>held-out shapes colour + shape 0.60</b>" in board
    assert "untrained (random adapter)</div>" in board


def test_the_leaderboard_module_loads_without_gradio_or_the_ui_for_the_train_package():
    code = ("import sys, vlm_demo.leaderboard, train.leaderboard; "
            "print(sorted(m for m in ('gradio', 'vlm_demo.ui') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_models_tab_opens_on_the_default_adapters_card():
    from vlm_demo.combos import COMBOS, DEFAULT_COMBO
    from vlm_demo.ui.cards import first_card

    default = COMBOS[DEFAULT_COMBO].checkpoint
    assert first_card(["another", default]) == default
    assert first_card(["another", "one"]) == "another" and first_card([]) is None
