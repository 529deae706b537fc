"""The sweep runner's statistics and its promise that seed s gives every arm the same data order."""

from __future__ import annotations

import json

import pytest
from study_helpers import base_overrides

from train.sweep import Arm, interval, mean_curve, paired_interval, read_curve, run_sweep, steps_to_threshold


def test_paired_interval_is_the_student_t_interval_of_per_seed_differences():
    exact = paired_interval([3.0, 4.0, 5.0], [2.0, 3.0, 4.0])
    assert exact["mean"] == 1 and exact["low"] == exact["high"] == 1
    spread = paired_interval([2.0, 4.0, 6.0], [1.0, 2.0, 3.0])  # differences 1, 2, 3: sd 1, t(0.975, 2) = 4.303
    assert spread["mean"] == 2 and spread["high"] - 2 == pytest.approx(4.3027 / 3**0.5, rel=1e-4)
    assert interval([1.0])["low"] is None
    with pytest.raises(ValueError, match="same seeds"):
        paired_interval([1.0], [1.0, 2.0])


def test_steps_to_threshold_uses_the_moving_mean():
    steps, losses = [10, 20, 30, 40], [3.0, 1.0, 2.0, 0.5]
    assert steps_to_threshold(steps, losses, 1.0) == 20
    assert steps_to_threshold(steps, losses, 1.0, window=2) is None  # moving means 2.0, 1.5, 1.25
    assert steps_to_threshold(steps, losses, 1.5, window=2) == 30
    assert steps_to_threshold(steps, losses, 1.3, window=2) == 40
    assert steps_to_threshold(steps, losses, 0.1) is None


def test_arms_share_the_data_order_of_a_seed_and_reuse_finished_runs(tiny_llm_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("VLM_DEMO_CACHE", str(tmp_path / "cache"))
    base = base_overrides(tiny_llm_dir, "train.max_steps=2", count=4)
    arms = [Arm("linear", [("caption", ['model.adapter="linear"'])]),
            Arm("mlp-two-stages", [("align", []), ("caption", [])])]
    sweep = run_sweep(arms, [0, 1], tmp_path / "runs", base)
    order = {(arm, seed): json.loads((folders[-1] / "summary.json").read_text())["data_order"]
             for arm, by_seed in sweep.items() for seed, folders in by_seed.items()}
    assert order["linear", 0] == order["mlp-two-stages", 0] != order["linear", 1] == order["mlp-two-stages", 1]
    second = json.loads((sweep["mlp-two-stages"][0][1] / "config.json").read_text())
    assert second["model"]["init_from"] == str(sweep["mlp-two-stages"][0][0] / "adapter")
    stamp = (sweep["linear"][0][0] / "summary.json").stat().st_mtime_ns
    run_sweep(arms[:1], [0], tmp_path / "runs", base)
    assert (sweep["linear"][0][0] / "summary.json").stat().st_mtime_ns == stamp
    steps, losses = mean_curve(sweep["linear"][0] + sweep["linear"][1])
    assert steps == [1, 2] and losses == pytest.approx([(a + b) / 2 for a, b in zip(
        read_curve(sweep["linear"][0][0])[1], read_curve(sweep["linear"][1][0])[1])])


def test_an_arm_after_another_continues_its_runs_without_training_them_again(tiny_llm_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("VLM_DEMO_CACHE", str(tmp_path / "cache"))
    base = base_overrides(tiny_llm_dir, "train.max_steps=1", count=4)
    first = Arm("align", [("align", [])])
    (earlier,) = run_sweep([first], [0], tmp_path / "runs", base)["align"][0]
    stamp = (earlier / "summary.json").stat().st_mtime_ns
    folders = run_sweep([Arm("then", [("caption", [])], after=first)], [0], tmp_path / "runs", base)["then"][0]
    assert folders[0] == earlier and (earlier / "summary.json").stat().st_mtime_ns == stamp
    assert folders[1] == tmp_path / "runs" / "then" / "seed-0" / "1-caption"
    assert json.loads((folders[1] / "config.json").read_text())["model"]["init_from"] == str(earlier / "adapter")


def test_a_run_stopped_after_a_checkpoint_is_resumed_not_refused(tiny_llm_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("VLM_DEMO_CACHE", str(tmp_path / "cache"))
    base = base_overrides(tiny_llm_dir, "train.max_steps=4", "train.save_every=2", count=4)
    arms = [Arm("linear", [("caption", ['model.adapter="linear"'])])]
    (folder,) = run_sweep(arms, [0], tmp_path / "runs", base)["linear"][0]
    (folder / "summary.json").unlink()  # as if the process had been killed after the checkpoint of step 2
    (folder / "checkpoints" / "latest").write_text("checkpoint-0000002")
    run_sweep(arms, [0], tmp_path / "runs", base)
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["resumed_from"] == "checkpoint-0000002" and summary["steps_this_run"] == 2
