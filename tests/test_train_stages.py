"""Training stages on tiny configs: distillation, align, caption (frozen, LoRA, QLoRA), eval, bad configs, and a
SIGKILLed run that resumes to the same weights as an uninterrupted one (the EMD losses: test_train_losses.py)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from train.config import ConfigError, load_config
from train.data.shapes import shapes_samples
from train.evaluate import classification_correct, compute_metrics, shapes_attributes

ROOT = Path(__file__).resolve().parent.parent


def _overrides(llm_dir: Path, output: Path, *extra: str) -> list[str]:
    return [f'model.llm="{llm_dir}"', f'output_dir="{output}"', 'data.train=[{name="shapes",count=12}]',
            'data.eval=[{name="shapes",count=4,vqa_per_image=1},{name="digits",count=4}]', "train.batch_size=4",
            "train.max_steps=6", "train.save_every=2", "train.log_every=1", "eval.max_new_tokens=4", *extra]


def _run_stage(stage: str, overrides: list[str], cache: Path) -> Path:
    from train.loop import train_stage

    os.environ["VLM_DEMO_CACHE"] = str(cache)
    return train_stage(stage, load_config(None, overrides), progress=False)


@pytest.mark.parametrize("override, message", [
    ("train.lrr=1", "unknown config key 'train.lrr' (did you mean 'train.lr'?)"),
    ("caption.llm_mode=\"full\"", "'caption.llm_mode' must be one of"),
    ("train.batch_size=0", "'train.batch_size' must be positive"),
    ("data.train=[{count=3}]", "needs a 'name'"),
    ("model.combo=nope", "'model.combo' must be a registered combination, got 'nope'"),
])
def test_bad_config_fails_at_start_with_a_clear_message(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(None, [override])


def test_model_combo_supplies_the_combinations_parts_and_explicit_keys_win():
    from vlm_demo.combos import COMBOS

    model = load_config(None, ["model.combo=query"]).model
    assert (model.encoder, model.adapter, model.llm) == (COMBOS["query"].encoder, "query", COMBOS["query"].llm)
    assert model.adapter_options == COMBOS["query"].adapter_options
    assert load_config(None, ["model.combo=query", "model.adapter_options={num_queries=4}"]).model.adapter_options == {
        "num_queries": 4}


def test_every_family_of_the_family_recipe_trains_on_the_same_data_steps_and_llm_mode():
    families = re.search(r"^FAMILIES = (.*)$", (ROOT / "Makefile").read_text(), re.MULTILINE)[1].split()
    configs = [load_config(ROOT / "train/configs/family.toml", [f"model.combo={name}"]) for name in families]
    assert {config.model.adapter for config in configs} >= {"mlp", "linear", "query", "attention", "perceiver",
                                                            "multistage", "tinylm"}
    recipes = {json.dumps([config.data.train, asdict(config.train), config.caption.llm_mode, config.model.init_from])
               for config in configs}
    assert len(recipes) == 1 and configs[0].caption.llm_mode == "frozen"


def test_cli_reports_bad_config_with_exit_status_2(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nlr = 'fast'\n")
    result = subprocess.run([sys.executable, "-m", "train", "align", "--config", str(bad)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "error: 'train.lr' must be float, got 'fast'" in result.stderr


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "model.safetensors")


def test_align_stage_changes_weights_without_running_the_llm(tiny_llm_dir, tmp_path, monkeypatch):
    from transformers import LlamaForCausalLM

    def forbidden(*args, **kwargs):
        raise AssertionError("the LLM must not run during align")

    monkeypatch.setattr(LlamaForCausalLM, "forward", forbidden)
    final = _run_stage("align", _overrides(tiny_llm_dir, tmp_path / "align", "train.seed=3"), tmp_path / "cache")
    init = _run_stage("align", _overrides(tiny_llm_dir, tmp_path / "zero", "train.max_steps=1", "train.lr=1e-12",
                                          "train.seed=3"), tmp_path / "cache")
    assert not torch.equal(_weights(final)["fc1.weight"], _weights(init)["fc1.weight"])
    losses = [json.loads(line)["loss"] for line in (tmp_path / "align" / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 6 and losses[-1] < losses[0]


@pytest.mark.parametrize("mode", ["frozen", "lora", "qlora"])
def test_caption_stage_trains_adapter_and_only_lora_weights_of_the_llm(mode, tiny_llm_dir, tmp_path):
    final = _run_stage("caption", _overrides(tiny_llm_dir, tmp_path / mode, f'caption.llm_mode="{mode}"',
                                             'caption.lora_targets=["q_proj","v_proj"]'), tmp_path / "cache")
    summary = json.loads((tmp_path / mode / "summary.json").read_text())
    adapter_params = sum(v.numel() for v in _weights(final).values())
    assert summary["steps"] == 6
    if mode == "frozen":
        assert summary["trainable_parameters"] == adapter_params
        assert not (final / "lora").exists()
    else:
        assert summary["trainable_parameters"] > adapter_params
        assert (final / "lora" / "adapter_model.safetensors").is_file()


def test_eval_writes_metrics_for_every_task(tiny_llm_dir, tmp_path):
    from train.evaluate import evaluate

    overrides = _overrides(tiny_llm_dir, tmp_path / "run")
    _run_stage("caption", overrides, tmp_path / "cache")
    metrics = evaluate(load_config(None, overrides), progress=False)
    assert {"caption", "shapes_attributes", "vqa_exact_match", "digits_accuracy"} <= set(metrics)
    assert (tmp_path / "run" / "eval_predictions.jsonl").read_text().count("\n") == 4 + 4 + 4


def test_shapes_attribute_scoring():
    objects = [{"colour": "red", "shape": "circle"}, {"colour": "blue", "shape": "square"}]
    assert shapes_attributes("Two shapes: a red circle and a blue square.", objects)["all"]
    wrong = shapes_attributes("Three shapes: a red circle and a green square.", objects)
    assert not wrong["colour"] and wrong["shape"] and not wrong["count"]


def test_classification_lenient_versus_strict():
    digit = next(s for s in __import__("train.data", fromlist=["x"]).load_dataset("digits", "test", 20)
                 if s.label == "3")
    assert classification_correct("This is the digit 3.", digit) == (True, True)
    assert classification_correct("It could be 3 or 8.", digit) == (True, False)
    assert classification_correct("Seven.", digit) == (False, False)


def test_caption_metrics_reward_the_reference():
    samples = [s for s in shapes_samples("test", 6, vqa_per_image=0)]
    perfect = compute_metrics(samples, [s.references[0] for s in samples])
    poor = compute_metrics(samples, ["a photo of something" for _ in samples])
    assert perfect["caption"]["bleu4"] > 90 > poor["caption"]["bleu4"]
    assert perfect["caption"]["cider"] > poor["caption"]["cider"]
    assert perfect["shapes_attributes"]["all"] == 1.0


def _kill_at_checkpoint(command: list[str], env: dict, latest: Path, at_least: str) -> None:
    victim = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and victim.poll() is None:
        if latest.is_file() and latest.read_text().strip() >= at_least:
            import psutil

            launcher = psutil.Process(victim.pid)
            for process in [launcher, *launcher.children(recursive=True)]:  # the launcher and its workers
                with contextlib.suppress(psutil.NoSuchProcess):
                    process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    victim.wait(timeout=60)
    assert victim.returncode == -signal.SIGKILL, "the run finished before it could be killed"


def _same_weights(first: Path, second: Path) -> bool:
    pairs = [(_weights(first), _weights(second)),
             (load_file(first / "lora" / "adapter_model.safetensors"),
              load_file(second / "lora" / "adapter_model.safetensors"))]
    return all(a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a) for a, b in pairs)


def test_sigkill_then_resume_continues_from_the_checkpoint_to_the_same_weights(tiny_llm_dir, tmp_path, caplog):
    """LoRA dropout draws from the RNG and grad_accum=2 accumulates across micro-batches, so only a resume that
    restores weights, optimizer, scheduler, RNG and the batch position reproduces the uninterrupted run."""
    env = {**os.environ, "VLM_DEMO_CACHE": str(tmp_path / "cache")}
    base = ['caption.llm_mode="lora"', 'caption.lora_targets=["q_proj","v_proj"]', "train.max_steps=24",
            "train.save_every=4", "train.grad_accum=2"]
    straight = _run_stage("caption", _overrides(tiny_llm_dir, tmp_path / "straight", *base), tmp_path / "cache")
    killed = tmp_path / "killed"
    command = [sys.executable, "-m", "train", "caption", "--quiet", *_overrides(tiny_llm_dir, killed, *base)]
    _kill_at_checkpoint(command, env, killed / "checkpoints" / "latest", "checkpoint-0000008")
    assert not (killed / "adapter").exists()
    shutil.copytree(killed, tmp_path / "control")

    resumed = train_stage_resumed(_overrides(tiny_llm_dir, killed, *base), tmp_path / "cache")
    summary = json.loads((killed / "summary.json").read_text())
    start = int(summary["resumed_from"].removeprefix("checkpoint-"))
    assert start >= 8 and summary["steps"] == 24 and summary["steps_this_run"] == 24 - start
    assert [json.loads(line)["step"] for line in (killed / "metrics.jsonl").read_text().splitlines()] == list(
        range(1, 25))
    assert _same_weights(straight, resumed)

    control = tmp_path / "control"
    latest = control / "checkpoints" / (control / "checkpoints" / "latest").read_text().strip()
    (latest / "random_states_0.pkl").unlink()  # the negative control: everything restored but the RNG
    with caplog.at_level("WARNING", logger="train"):
        without_rng = train_stage_resumed(_overrides(tiny_llm_dir, control, *base), tmp_path / "cache")
    assert "holds no RNG state" in caplog.text
    assert not _same_weights(straight, without_rng)


def train_stage_resumed(overrides: list[str], cache: Path) -> Path:
    from train.loop import train_stage

    os.environ["VLM_DEMO_CACHE"] = str(cache)
    return train_stage("caption", load_config(None, overrides), resume=True, progress=False)


def test_resume_without_a_checkpoint_is_refused_and_keeps_the_metrics(tiny_llm_dir, tmp_path, capsys):
    from train.__main__ import main

    output = tmp_path / "run"
    output.mkdir()
    (output / "metrics.jsonl").write_text('{"step": 1, "loss": 2.0}\n')
    status = main(["caption", "--resume", "--quiet", *_overrides(tiny_llm_dir, output)])
    assert status == 2 and "holds no checkpoint" in capsys.readouterr().err
    (output / "checkpoints").mkdir()
    (output / "checkpoints" / "latest").write_text("checkpoint-0000009")
    assert main(["caption", "--resume", "--quiet", *_overrides(tiny_llm_dir, output)]) == 2
    assert "which does not exist" in capsys.readouterr().err
    assert (output / "metrics.jsonl").read_text() == '{"step": 1, "loss": 2.0}\n'


def test_distillation_to_a_teacher_encoder_reports_feature_mse(tmp_path):
    from train.evaluate import evaluate

    overrides = [f'output_dir="{tmp_path / "distill"}"', 'model.adapter="multistage"',
                 'model.adapter_options={version="v1",grid_size=16,proj_dim=16,fusion_dim=32}',
                 'align.loss="mse"', 'align.teacher="dinov2-small"', 'data.train=[{name="shapes",count=8}]',
                 'data.eval=[{name="shapes",count=3}]', "train.batch_size=4", "train.max_steps=3"]
    _run_stage("align", overrides, tmp_path / "cache")
    config = json.loads((tmp_path / "distill" / "adapter" / "config.json").read_text())
    assert (config["llm"], config["llm_hidden"]) == ("dinov2-small", 384)  # the target is the teacher
    metrics = evaluate(load_config(None, overrides), progress=False)["feature_mse"]
    assert metrics["images"] == 3 and metrics["mse_mean"] > 0 and metrics["mse_std"] >= 0


def test_ship_writes_a_card_covering_every_stage(tiny_llm_dir, tmp_path, monkeypatch):
    from train import card
    from train.evaluate import evaluate

    align = _overrides(tiny_llm_dir, tmp_path / "align")
    _run_stage("align", align, tmp_path / "cache")
    caption = _overrides(tiny_llm_dir, tmp_path / "caption", f'model.init_from="{tmp_path / "align" / "adapter"}"',
                         'name="tiny"')
    _run_stage("caption", caption, tmp_path / "cache")
    config = load_config(None, caption)
    evaluate(config, progress=False)
    monkeypatch.setattr(card, "ADAPTERS_DIR", tmp_path / "assets")
    shipped = card.ship(config)
    assert {p.name for p in shipped.iterdir()} >= {"config.json", "model.safetensors", "README.md",
                                                   "loss_curve.png", "eval.json", "training.json"}
    text = (shipped / "README.md").read_text()
    assert "**align (align)**" in text and "**caption (caption)**" in text and "| digits accuracy" in text
    assert "Known limits" in text

    more = _overrides(tiny_llm_dir, tmp_path / "more", f'model.init_from="{shipped}"', 'name="tiny"')
    _run_stage("caption", more, tmp_path / "cache")
    evaluate(load_config(None, more), progress=False)
    reshipped = card.ship(load_config(None, more))  # continued from the release: its earlier stages stay on record
    record = json.loads((reshipped / "training.json").read_text())
    assert list(record["stages"]) == list(record["losses"]) == ["align (align)", "caption (caption)", "caption (more)"]
    assert all(steps for steps, _ in record["losses"].values())
    assert "**caption (more)**" in (reshipped / "README.md").read_text()
    renamed = card.ship(load_config(None, [*more, 'ship_as="tiny--recipe-b"']))
    assert renamed == tmp_path / "assets" / "tiny--recipe-b" and (renamed / "model.safetensors").is_file()
    with pytest.raises(ValueError, match="plain folder name"):
        card.ship(load_config(None, [*more, 'ship_as="../elsewhere"']))


def test_a_lora_run_continues_the_lora_it_starts_from_and_ships_it(tiny_llm_dir, tmp_path, monkeypatch):
    from PIL import Image

    from train import card
    from train.evaluate import evaluate
    from vlm_demo.combos import Combo
    from vlm_demo.pipeline import VisionLanguageModel

    lora = ['caption.llm_mode="lora"', 'caption.lora_targets=["q_proj","v_proj"]', 'name="tiny"']
    first = _run_stage("caption", _overrides(tiny_llm_dir, tmp_path / "first", *lora), tmp_path / "cache")
    continued = _overrides(tiny_llm_dir, tmp_path / "second", f'model.init_from="{first}"', "train.lr=1e-9", *lora)
    second = _run_stage("caption", continued, tmp_path / "cache")
    before = load_file(first / "lora" / "adapter_model.safetensors")
    after = load_file(second / "lora" / "adapter_model.safetensors")
    trained_b = [k for k in before if "lora_B" in k and before[k].abs().sum() > 0]
    assert trained_b and all(torch.allclose(before[k], after[k], atol=1e-6) for k in before)

    config = load_config(None, continued)
    evaluate(config, progress=False)
    monkeypatch.setattr(card, "ADAPTERS_DIR", tmp_path / "assets")
    shipped = card.ship(config)
    assert (shipped / "lora" / "adapter_model.safetensors").is_file()
    assert "LoRA (r=8, alpha=32, dropout 0.1, on q_proj, v_proj)" in (shipped / "README.md").read_text()
    vlm = VisionLanguageModel.from_combo(Combo("tiny", "efficientnet-lite0", "mlp", str(tiny_llm_dir),
                                               checkpoint=str(shipped)))
    assert vlm.lora in vlm.llm.loras and "LoRA" in vlm.status
    assert len(vlm.caption([Image.new("RGB", (64, 64), "red")])) == 1


def test_lora_lr_trains_the_lora_at_its_own_rate_beside_the_adapter(tiny_llm_dir, tmp_path):
    overrides = _overrides(tiny_llm_dir, tmp_path / "run", 'caption.llm_mode="lora"', "caption.lora_lr=1e-2",
                           'caption.lora_targets=["q_proj","v_proj"]', "train.lr=1e-9", "train.warmup_steps=0",
                           "train.snapshots=true")
    final = _run_stage("caption", overrides, tmp_path / "cache")
    start = load_file(final.parent / "snapshots" / "step-0000000" / "model.safetensors")
    trained = load_file(final / "model.safetensors")
    assert all(torch.allclose(start[k], trained[k], atol=1e-6) for k in start)  # the adapter at 1e-9: unchanged
    lora = load_file(final / "lora" / "adapter_model.safetensors")
    assert all(lora[k].abs().max() > 1e-4 for k in lora if "lora_B" in k)  # lora_B starts at zero
    with pytest.raises(ConfigError, match="lora_lr"):
        load_config(None, [*overrides, "caption.lora_lr=-1"])
