"""Model cards (vlm_demo/cards/, `python -m train.card`): written from a folder's eval.json and training.json with
huggingface_hub's ModelCard, read back from the card's metadata (never its markdown), people's notes kept when a
card is regenerated, and every shipped card in step with its folder's records. Nothing is trained or loaded."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from vlm_demo.cards import (
    NOTES_END,
    NOTES_START,
    Records,
    card_data,
    card_figures,
    card_notes,
    card_text,
    family_recipe,
    read_card,
    read_figures,
    render_card,
    write_card,
)
from vlm_demo.combos import ADAPTERS_DIR

SWISH_MLP = "efficientnet-lite0-swish--mlp--smollm2-135m-instruct"
TINYLM = "efficientnet-lite0--tinylm--smollm2-135m-instruct"
OLD_WRITER_CARD = """---
license: apache-2.0
---
# `mlp` adapter

A card written before cards were regenerated: its table says 0.999, which nothing reads.

| metric | value |
| --- | --- |
| shapes captions: colour and shape both right (1 object) | 0.999 |
"""


def _copy(name: str, target: Path, readme: str | None = None) -> Path:
    """A shipped folder's records (and its photo captions) without the weights, with `readme` as its card."""
    folder = target / name
    folder.mkdir(parents=True)
    for file in ("config.json", "eval.json", "training.json", "eval_predictions.jsonl"):
        if (ADAPTERS_DIR / name / file).is_file():
            shutil.copy2(ADAPTERS_DIR / name / file, folder / file)
    if readme is not None:
        (folder / "README.md").write_text(readme)
    return folder


def _same(read, written) -> None:
    assert read.metrics == pytest.approx(written.metrics, abs=1e-4) and read.stages == written.stages


def test_writer_then_reader_round_trips_the_figures(tmp_path):
    folder = _copy(SWISH_MLP, tmp_path)
    write_card(folder)
    card = ModelCard.load(folder / "README.md")
    written = Records.read(folder).figures()
    assert len(written.metrics) == 13 and [s.run for s in written.stages] == ["mlp-align", "mlp-caption", "mlp-lora"]
    _same(card_figures(card), written)
    assert card.data.model_name == "mlp adapter" and card.data.get("training")[2]["llm_mode"] == "lora"
    assert {r.metric_type for r in card.data.eval_results} >= {"single_object_colour_and_shape", "bleu4", "overall"}


def test_a_card_without_eval_results_is_read_as_no_figures(tmp_path):
    folder = tmp_path / "bare"
    folder.mkdir()
    assert not card_figures(read_card(folder))  # no card at all
    (folder / "README.md").write_text(OLD_WRITER_CARD)
    figures = card_figures(read_card(folder))
    assert not figures and figures.metrics == {} and figures.stages == []
    assert not read_figures(folder)  # no eval.json, no metadata: the table's 0.999 is never taken
    (folder / "README.md").write_text("# No metadata at all\n")
    assert not card_figures(read_card(folder)) and card_text(folder) == "# No metadata at all"


def test_figures_come_from_the_records_or_the_card_metadata_never_its_markdown(tmp_path):
    folder = _copy(TINYLM, tmp_path)
    write_card(folder)
    path = folder / "README.md"
    path.write_text(path.read_text().replace("| shapes VQA exact match (all types) | 0.270 |",
                                             "| shapes VQA exact match (all types) | 0.999 |"))
    assert read_figures(folder).metrics["shapes VQA exact match (all types)"] == 0.27
    (folder / "eval.json").unlink()
    (folder / "training.json").unlink()  # a folder with only its card: the metadata's figures
    assert read_figures(folder).metrics["shapes VQA exact match (all types)"] == 0.27


def test_every_shipped_card_carries_its_folders_eval_and_training_figures():
    folders = [f for f in sorted(ADAPTERS_DIR.iterdir()) if (f / "config.json").is_file()]
    for folder in folders:
        records = Records.read(folder)
        assert records.evaluation and records.run, folder.name
        _same(card_figures(read_card(folder)), records.figures())


def test_regenerating_a_card_keeps_its_notes_and_reports_the_lines_it_drops(tmp_path, capsys):
    from train.card import main

    note = "> **Legacy encoder.** Kept word for word."
    old = OLD_WRITER_CARD.replace("# `mlp` adapter\n", f"# `mlp` adapter\n\n{NOTES_START}\n{note}\n{NOTES_END}\n")
    folder = _copy(SWISH_MLP, tmp_path, old)
    assert main([str(folder)]) == 0
    out = capsys.readouterr().out
    assert "written from eval.json and training.json" in out and "no longer in the card: A card written" in out
    text = (folder / "README.md").read_text()
    assert card_notes(folder) == note and text.count(note) == 1 and "0.999" not in text
    assert "| shapes captions: colour and shape both right (1 object) | 0.600 |" in text
    assert "**caption (mlp-lora)**" in text and "LoRA (r=8, alpha=32" in text
    assert main([str(folder)]) == 0 and (folder / "README.md").read_text() == text  # regenerating again: the same
    assert card_notes(_copy(TINYLM, tmp_path / "plain", OLD_WRITER_CARD)) == ""


def test_the_card_command_refuses_a_folder_without_records(tmp_path, capsys):
    from train.card import main

    folder = tmp_path / "empty"
    folder.mkdir()
    assert main([str(folder)]) == 2 and "eval.json and training.json" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([])


def test_only_family_recipe_runs_are_named_family_runs():
    lora = {"name": "mlp", "output_dir": "runs/mlp-lora", "model": {"combo": "mlp", "adapter": "mlp"}}
    assert family_recipe(lora, "efficientnet-lite0--mlp--smollm2-135m-instruct") is None
    family = {"name": "query", "output_dir": "runs/family-query", "model": {"combo": "query", "adapter": "query"}}
    assert family_recipe(family, "efficientnet-lite0--query--smollm2-135m-instruct") == "query"
    older = {"name": "mlp", "output_dir": "runs/mlp-noalign", "model": {"adapter": "mlp"}}
    assert family_recipe(older, "efficientnet-lite0--mlp--smollm2-135m-instruct--family-recipe") == "mlp"
    text = card_text(ADAPTERS_DIR / "efficientnet-lite0--mlp--smollm2-135m-instruct--family-recipe")
    assert "Reproduce: `make family-mlp`" in text and "Trained with the family recipe" in text


def test_card_metadata_names_base_models_and_data_by_hub_id():
    run = {"name": "clip", "model": {"encoder": "clip-vit-b16", "llm": "smollm2-360m-instruct"},
           "data": {"train": [{"name": "hub:jxie/flickr8k"}], "eval": [{"name": "hub:jxie/flickr8k"}]}}
    data = card_data(run, {"caption": {"bleu4": 21.5, "cider": 0.61}})
    assert data.base_model == ["HuggingFaceTB/SmolLM2-360M-Instruct", "openai/clip-vit-base-patch16"]
    assert data.datasets == ["jxie/flickr8k"]
    assert [(r.metric_type, r.metric_value, r.dataset_type) for r in data.eval_results] == [
        ("bleu4", 21.5, "jxie/flickr8k"), ("cider", 0.61, "jxie/flickr8k")]


def test_a_card_names_the_vqa_majority_baseline_and_says_when_the_adapter_does_not_beat_it():
    records = Records.read(ADAPTERS_DIR / TINYLM)
    text = str(render_card(records, TINYLM))
    assert "| shapes VQA: always answering the commonest answer per question type | 0.295 |" in text
    assert "- shapes VQA: 27% is no better than always answering the commonest answer" in text
    records.evaluation["vqa_exact_match"]["overall"] = 0.6
    del records.evaluation["photos_object_named"]["encoder_top1_baseline"]  # an encoder without an ImageNet head
    text = str(render_card(records, TINYLM))
    assert "- shapes VQA:" not in text and "top-1 ImageNet label" not in text
    assert "the main object in 0% of 35 test-split photos; every photo" in text
    assert "captioned by the encoder's own ImageNet classifier" in text
    records.run["model"]["encoder"] = "dinov2-small"
    assert "no ImageNet classifier, so the drawings are captioned by efficientnet-lite0's" in str(
        render_card(records, TINYLM))


def test_a_legacy_card_without_photos_does_not_mention_held_out_photos():
    text = card_text(ADAPTERS_DIR / SWISH_MLP)
    assert "Data: train splits only. Prompts:" in text and "## Every held-out photo" not in text
    assert card_notes(ADAPTERS_DIR / SWISH_MLP).startswith("> **Legacy encoder.**")
    assert json.loads((ADAPTERS_DIR / SWISH_MLP / "config.json").read_text())["encoder"] == "efficientnet-lite0-swish"
