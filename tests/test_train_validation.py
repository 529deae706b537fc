"""Validation loss during training (metrics.jsonl, never the CSV) and loadable snapshots at step 0 and each epoch."""

from __future__ import annotations

import csv

import pytest
import torch
from study_helpers import metrics, overrides, run_stage, weights

from vlm_demo.adapters import load_adapter


def test_validation_loss_is_logged_at_step_zero_and_each_epoch_and_snapshots_load(tiny_llm_dir, tmp_path):
    output = tmp_path / "run"
    final = run_stage("caption", overrides(
        tiny_llm_dir, output, "train.max_steps=0", "train.epochs=2", "train.snapshots=true", "train.lr=3e-3",
        'data.val=[{name="shapes",count=3,vqa_per_image=0}]', count=4), tmp_path / "cache")
    rows = metrics(output)
    val = [row for row in rows if "val_loss" in row]
    assert [row["step"] for row in val] == [0, 2, 4] and all(row["val_samples"] == 3 for row in val)
    assert val[-1]["val_loss"] < val[0]["val_loss"]
    with (output / "metrics.csv").open() as handle:
        assert [int(row["step"]) for row in csv.DictReader(handle)] == [1, 2, 3, 4]
    names = sorted(path.name for path in (output / "snapshots").iterdir())
    assert names == ["epoch-001", "epoch-002", "step-0000000"]
    first, last = load_adapter(output / "snapshots" / "step-0000000"), load_adapter(output / "snapshots" / "epoch-002")
    assert not torch.equal(first.fc1.weight, last.fc1.weight)
    assert torch.equal(last.fc1.weight, weights(final)["fc1.weight"])


def test_validation_every_n_steps_uses_the_validation_split_only(tiny_llm_dir, tmp_path):
    output = tmp_path / "run"
    run_stage("align", overrides(tiny_llm_dir, output, "train.val_every=2",
                                 'data.val=[{name="shapes",count=2,vqa_per_image=0}]'), tmp_path / "cache")
    val = [row for row in metrics(output) if "val_loss" in row]
    assert [row["step"] for row in val] == [0, 2, 4] and val[0]["val_samples"] == 2
    assert not (output / "snapshots").exists()


def test_per_item_validation_losses_are_those_of_the_last_validation(tiny_llm_dir, tmp_path):
    import json

    from train.study.val_items import ITEM_LOSSES, item_losses

    output = tmp_path / "run"
    run_stage("caption", overrides(tiny_llm_dir, output, "train.val_every=4", "train.lr=3e-3",
                                   'data.val=[{name="shapes",count=1,vqa_per_image=0}]'), tmp_path / "cache")
    last = [row for row in metrics(output) if "val_loss" in row][-1]
    before = sorted(path.name for path in output.iterdir())
    losses = item_losses(output)
    assert len(losses) == 1 and losses[0] == pytest.approx(last["val_loss"], rel=1e-4)  # one sample: the same loss
    assert sorted(path.name for path in output.iterdir()) == sorted([*before, ITEM_LOSSES["val"]])  # nothing else
    trained = item_losses(output, "train")  # the final training loss, item by item
    assert trained and all(loss > 0 for loss in trained) and (output / ITEM_LOSSES["train"]).is_file()
    assert json.loads((output / ITEM_LOSSES["val"]).read_text())["losses"] == losses == item_losses(output)
