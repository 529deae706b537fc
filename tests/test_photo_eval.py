"""`python -m train.photo_eval`: a shipped checkpoint scored on the photos' test split keeps its other figures."""

from __future__ import annotations

import json
import shutil

import pytest

import train.photo_eval as photo_eval
from train.data import load_dataset
from vlm_demo.combos import ADAPTERS_DIR

LABEL = ADAPTERS_DIR / "efficientnet-lite0--label--smollm2-135m-instruct"  # the smallest shipped adapter


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    """A copy of a shipped folder, and the photos' test split cut to its first two photos."""
    folder = tmp_path / LABEL.name
    shutil.copytree(LABEL, folder)
    two = load_dataset("photos", "test")[:2]
    monkeypatch.setattr(photo_eval, "load_dataset", lambda name, split: two if (name, split) == ("photos", "test")
                        else pytest.fail(f"read {name} {split}"))
    return folder, two


def test_scoring_on_the_test_split_replaces_only_the_photo_figure_and_rows(shipped):
    folder, two = shipped
    before = json.loads((folder / "eval.json").read_text())
    other_rows = [row for row in map(json.loads, (folder / "eval_predictions.jsonl").read_text().splitlines())
                  if row["task"] != "name"]
    figure = photo_eval.evaluate_photos(folder, progress=False)
    after = json.loads((folder / "eval.json").read_text())
    assert figure["split"] == "test" and figure["count"] == 2
    assert set(figure) >= {"score", "encoder_top1_baseline", "encoder_top3_baseline"}
    assert after["photos_object_named"] == figure
    assert {k: v for k, v in after.items() if k != "photos_object_named"} == {
        k: v for k, v in before.items() if k != "photos_object_named"}
    rows = [json.loads(line) for line in (folder / "eval_predictions.jsonl").read_text().splitlines()]
    assert [r for r in rows if r["task"] != "name"] == other_rows
    assert [r["image"] for r in rows if r["task"] == "name"] == [s.image_id for s in two]
    assert "2 test-split photos" in (folder / "README.md").read_text()


def test_a_folder_already_scored_on_the_test_split_is_skipped(shipped, capsys, monkeypatch):
    folder, _ = shipped
    evaluation = json.loads((folder / "eval.json").read_text())
    evaluation["photos_object_named"]["split"] = "test"
    (folder / "eval.json").write_text(json.dumps(evaluation))
    monkeypatch.setattr(photo_eval, "evaluate_photos", lambda *a, **k: pytest.fail("scored twice"))
    assert photo_eval.main([str(folder)]) == 0
    assert "already scored on the test split" in capsys.readouterr().out


def test_dev_scoring_reads_only_the_dev_split_and_writes_nothing(tmp_path, monkeypatch, capsys):
    folder = tmp_path / LABEL.name
    shutil.copytree(LABEL, folder)
    before = {path.name: path.read_bytes() for path in folder.rglob("*") if path.is_file()}
    two = load_dataset("photos", "dev")[:2]
    monkeypatch.setattr(photo_eval, "load_dataset", lambda name, split: two if (name, split) == ("photos", "dev")
                        else pytest.fail(f"read {name} {split}"))
    assert photo_eval.main(["--dev", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "of 2 dev photos" in out and "the encoder's top1" in out
    assert all(sample.image_id.removeprefix("photos-") in out for sample in two)
    assert {path.name: path.read_bytes() for path in folder.rglob("*") if path.is_file()} == before


def test_baselines_only_adds_the_encoders_missing_figures_and_keeps_the_captions(shipped, monkeypatch):
    folder, two = shipped
    evaluation = json.loads((folder / "eval.json").read_text())
    figure = evaluation["photos_object_named"]
    kept = {key: value for key, value in figure.items() if "everyday" not in key}
    (folder / "eval.json").write_text(json.dumps(evaluation | {"photos_object_named": kept}))
    predictions = (folder / "eval_predictions.jsonl").read_bytes()
    monkeypatch.setattr(photo_eval, "answer_all", lambda *a, **k: pytest.fail("captioned again"))
    assert photo_eval.main(["--baselines", str(folder)]) == 0
    after = json.loads((folder / "eval.json").read_text())["photos_object_named"]
    assert {k: v for k, v in after.items() if k in kept} == kept and "encoder_top1_everyday_baseline" in after
    assert (folder / "eval_predictions.jsonl").read_bytes() == predictions
