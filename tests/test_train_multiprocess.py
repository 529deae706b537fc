"""Training in two processes (gloo on the CPU, as `accelerate launch` runs it on GPUs): each process trains on its
half of every global batch, only the main process writes, the weights match one process on the same global batches,
and a SIGKILLed two-process run resumes to the weights of an uninterrupted one."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.multiprocess_run import record_batches
from tests.test_train_stages import _kill_at_checkpoint, _overrides, _run_stage, _same_weights
from train.stages import registry

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tests" / "multiprocess_run.py"
pytestmark = pytest.mark.slow
TOLERANCE = 5e-6  # largest weight difference, one vs two processes (fp32; gradients are averaged in another order)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _launch(stage: str, record: Path, overrides: list[str], *extra: str) -> list[str]:
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_ip",
            "127.0.0.1", "--main_process_port", str(_free_port()), str(SCRIPT), stage, str(record), *extra,
            *overrides]


def _env(cache: Path) -> dict[str, str]:
    return {**os.environ, "ACCELERATE_USE_CPU": "1", "VLM_DEMO_CACHE": str(cache), "OMP_NUM_THREADS": "1"}


def _run(command: list[str], env: dict) -> None:
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]


def test_two_processes_split_each_batch_write_once_and_match_one_process(tiny_llm_dir, tmp_path, monkeypatch):
    overrides = _overrides(tiny_llm_dir, tmp_path / "two", 'train.precision="fp32"', "train.max_steps=6")
    _run(_launch("align", tmp_path / "record", overrides), _env(tmp_path / "cache"))
    ranks = [json.loads((tmp_path / "record" / f"rank{r}.json").read_text()) for r in (0, 1)]

    seen: list[list[str]] = []
    monkeypatch.setitem(registry.STAGES, "align", registry.STAGES["align"])
    record_batches("align", seen)
    one = _run_stage("align", _overrides(tiny_llm_dir, tmp_path / "one", 'train.precision="fp32"',
                                         "train.max_steps=6"), tmp_path / "cache")

    assert len(seen) == len(ranks[0]["seen"]) == len(ranks[1]["seen"]) == 6
    for whole, first, second in zip(seen, ranks[0]["seen"], ranks[1]["seen"]):
        assert len(first) == len(second) == len(whole) // 2 and not set(first) & set(second)
        assert sorted(first + second) == sorted(whole)
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["batch_size"] == 4
    assert all(entry.startswith("os.mkdir checkpoints/.staging-") for entry in ranks[1]["writes"])
    assert any(entry.startswith("open metrics.jsonl") for entry in ranks[0]["writes"])
    assert (tmp_path / "two" / "checkpoints" / "checkpoint-0000006" / "random_states_1.pkl").is_file()

    two_weights, one_weights = load_file(tmp_path / "two" / "adapter" / "model.safetensors"), load_file(
        one / "model.safetensors")
    moved = max((one_weights[k] - load_file(tmp_path / "one" / "checkpoints" / "checkpoint-0000004" /
                                            "model.safetensors")[k]).abs().max().item() for k in one_weights)
    difference = max((two_weights[k] - one_weights[k]).abs().max().item() for k in one_weights)
    print(f"one vs two processes: largest weight difference {difference:.2e} (last two steps moved {moved:.2e})")
    assert moved > 20 * TOLERANCE and difference < TOLERANCE


def test_two_processes_resume_after_sigkill_to_the_uninterrupted_weights(tiny_llm_dir, tmp_path):
    base = ['caption.llm_mode="lora"', 'caption.lora_targets=["q_proj","v_proj"]', "train.max_steps=40",
            "train.save_every=4", 'train.precision="fp32"']
    env = _env(tmp_path / "cache")
    straight = _overrides(tiny_llm_dir, tmp_path / "straight", *base)
    _run(_launch("caption", tmp_path / "r1", straight), env)
    killed = tmp_path / "killed"
    overrides = _overrides(tiny_llm_dir, killed, *base)
    _kill_at_checkpoint(_launch("caption", tmp_path / "r2", overrides), env,
                        killed / "checkpoints" / "latest", "checkpoint-0000003")
    _run(_launch("caption", tmp_path / "r3", overrides, "--resume"), env)
    summary = json.loads((killed / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["resumed_from"] >= "checkpoint-0000003"
    assert 0 < summary["steps_this_run"] < 40
    assert _same_weights(tmp_path / "straight" / "adapter", killed / "adapter")
    assert torch.cuda.device_count() == 0  # the gloo path: this is what CI checks on CPUs
