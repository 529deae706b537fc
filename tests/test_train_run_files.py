"""Run files and precision in the loop: fsynced checkpoints, folders replaced by rename only, the fp16 gradient
scaler in checkpoints, checkpoints of the older format still resuming, and bf16 autocast reaching the LLM's
forward."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState

from tests.test_train_stages import _overrides, _run_stage
from train import card
from train.config import load_config
from train.run_files import Checkpoints, atomic_folder
from train.stages import registry


def test_checkpoint_files_are_fsynced_before_the_folder_is_renamed_into_place(tmp_path, monkeypatch):
    synced: list[str] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), real_fsync(fd)))
    checkpoints = Checkpoints(tmp_path / "checkpoints", keep=2)
    staging = checkpoints.start(5)
    (staging / "model.safetensors").write_bytes(b"weights")
    (staging / "optimizer.bin").write_bytes(b"state")
    target = checkpoints.commit(5, {"step": 5})
    assert target.name == "checkpoint-0000005" and checkpoints.latest() == target
    staged = {str(staging / name) for name in ("model.safetensors", "optimizer.bin", "loop_state.json")}
    assert staged <= set(synced) and str(staging) in synced
    assert any(path.endswith(".latest.tmp") for path in synced)


def test_a_failed_ship_leaves_the_shipped_adapter_as_it_was(tmp_path, monkeypatch):
    monkeypatch.setattr(card, "ADAPTERS_DIR", tmp_path / "assets")
    config = load_config(None, [f'output_dir="{tmp_path / "run"}"', 'model.adapter="mlp"'])
    shipped = tmp_path / "assets" / "efficientnet-lite0--mlp--smollm2-135m-instruct"
    shipped.mkdir(parents=True)
    (shipped / "model.safetensors").write_bytes(b"the shipped weights")
    with pytest.raises(FileNotFoundError):  # the run has no eval.json yet
        card.ship(config)
    assert (shipped / "model.safetensors").read_bytes() == b"the shipped weights"
    assert [p.name for p in (tmp_path / "assets").iterdir()] == [shipped.name]


def test_atomic_folder_replaces_the_whole_folder_or_nothing(tmp_path):
    target = tmp_path / "adapter"
    with atomic_folder(target) as staging:
        (staging / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_folder(target) as staging:
        (staging / "new.txt").write_text("half")
        raise RuntimeError("disk full")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"] and (target / "old.txt").is_file()
    with atomic_folder(target) as staging:
        (staging / "new.txt").write_text("new")
    assert [p.name for p in target.iterdir()] == ["new.txt"]


def test_fp16_gradient_scaler_state_is_saved_and_restored_with_the_checkpoint(tmp_path):
    model = torch.nn.Linear(3, 2)
    AcceleratorState._reset_state()
    accelerator = Accelerator()
    accelerator.scaler = torch.amp.GradScaler("cpu", init_scale=4096.0)  # accelerate makes one for fp16 on a GPU
    accelerator.prepare(model, torch.optim.AdamW(model.parameters()))
    accelerator.save_state(str(tmp_path / "checkpoint"))
    assert (tmp_path / "checkpoint" / "scaler.pt").is_file()
    accelerator.scaler = torch.amp.GradScaler("cpu", init_scale=1.0)
    accelerator.load_state(str(tmp_path / "checkpoint"))
    assert accelerator.scaler.get_scale() == 4096.0


def _autocast_seen(stage_precision: str, tiny_llm_dir: Path, tmp_path: Path, monkeypatch) -> set:
    seen: set = set()
    original = registry.STAGES["caption"]

    def build(config, adapter, llm):
        parts = original.build(config, adapter, llm)
        lora = next(m for name, m in llm.model.named_modules() if name.endswith("lora_A.default"))
        lora.register_forward_hook(lambda module, args, out: seen.add(
            ("llm", torch.is_autocast_enabled("cpu"), module.weight.dtype, out.dtype)))
        return parts

    monkeypatch.setitem(registry.STAGES, "caption", registry.Stage(original.needs, build))
    _run_stage("caption", _overrides(tiny_llm_dir, tmp_path / stage_precision, f'train.precision="{stage_precision}"',
                                     'caption.llm_mode="lora"', "train.max_steps=2"), tmp_path / "cache")
    return seen


def test_bf16_autocast_reaches_the_llm_forward(tiny_llm_dir, tmp_path, monkeypatch):
    """The LoRA's own weights stay fp32; only autocast turns its matmul into bf16 inside the LLM's forward."""
    assert _autocast_seen("bf16", tiny_llm_dir, tmp_path, monkeypatch) == {("llm", True, torch.float32,
                                                                            torch.bfloat16)}
    assert _autocast_seen("fp32", tiny_llm_dir, tmp_path, monkeypatch) == {("llm", False, torch.float32,
                                                                            torch.float32)}


def _as_legacy_checkpoint(folder: Path) -> None:
    """Rewrite a checkpoint in the format the loop wrote before accelerate's save_state (what runs started on the
    older code leave behind): adapter.safetensors, extra0.pt (LoRA weights), training_state.pt."""
    from accelerate.utils import load
    from safetensors.torch import load_file

    loop = json.loads((folder / "loop_state.json").read_text())
    states = load(folder / "random_states_0.pkl")
    version, python, gauss = states["random_state"]
    torch.save({"optimizer": torch.load(folder / "optimizer.bin", weights_only=True),
                "scheduler": torch.load(folder / "scheduler.bin", weights_only=True),
                "rng": {"torch": states["torch_manual_seed"], "python": list(python), "python_version": version,
                        "python_gauss": gauss},
                "step": loop["step"], "epoch": loop["epoch"], "batch_in_epoch": loop["batch_in_epoch"]},
               folder / "training_state.pt")
    torch.save(load_file(folder / "model_1.safetensors"), folder / "extra0.pt")
    (folder / "model.safetensors").rename(folder / "adapter.safetensors")
    for name in ("loop_state.json", "random_states_0.pkl", "optimizer.bin", "scheduler.bin", "model_1.safetensors"):
        (folder / name).unlink()


def test_a_checkpoint_from_before_accelerate_state_resumes_to_the_same_weights(tiny_llm_dir, tmp_path):
    from tests.test_train_stages import _same_weights, train_stage_resumed

    lora = ['caption.llm_mode="lora"', 'caption.lora_targets=["q_proj","v_proj"]', "train.max_steps=8",
            "train.save_every=4"]
    straight = _run_stage("caption", _overrides(tiny_llm_dir, tmp_path / "straight", *lora), tmp_path / "cache")
    old = tmp_path / "old"
    shutil.copytree(tmp_path / "straight", old)
    shutil.rmtree(old / "adapter")
    shutil.rmtree(old / "checkpoints" / "checkpoint-0000008")
    (old / "checkpoints" / "latest").write_text("checkpoint-0000004")
    _as_legacy_checkpoint(old / "checkpoints" / "checkpoint-0000004")
    resumed = train_stage_resumed(_overrides(tiny_llm_dir, old, *lora), tmp_path / "cache")
    assert json.loads((old / "summary.json").read_text())["steps_this_run"] == 4
    assert _same_weights(straight, resumed)


def test_metrics_reach_accelerate_trackers_and_the_csv_the_card_reads(tiny_llm_dir, tmp_path, monkeypatch):
    from accelerate.tracking import GeneralTracker

    from train import loop

    class Recording(GeneralTracker):
        name, requires_logging_directory, logged = "recording", False, []

        @property
        def tracker(self):
            return self

        def store_init_configuration(self, values):
            self.logged.append(("config", values))

        def log(self, values, step=None, **kwargs):
            self.logged.append((step, values))

    assert loop.installed_trackers(["no-such-tracker"]) == []
    monkeypatch.setattr(loop, "installed_trackers", lambda names: [Recording()])
    _run_stage("align", _overrides(tiny_llm_dir, tmp_path / "run", "train.max_steps=4", "train.log_every=2"),
               tmp_path / "cache")
    keys = ["elapsed_s", "epoch", "loss", "lr", "samples_per_s"]
    assert [(step, sorted(values)) for step, values in Recording.logged if step != "config"] == [(2, keys), (4, keys)]
    assert ("config", {"stage": "align", "batch_size": 4, "lr": 5e-4}) in Recording.logged
    assert (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0].startswith("step,epoch,loss")
