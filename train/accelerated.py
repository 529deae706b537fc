"""Accelerate around the loop: the accelerator for a run's precision and process count, checkpoints that hold only
what trains (tied tensors once), exact resume, and atomic checkpoint folders written by every process."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch
from accelerate import Accelerator, DataLoaderConfiguration
from accelerate.state import AcceleratorState
from accelerate.tracking import get_available_trackers
from safetensors.torch import load_model

from train.config import TrainConfig
from train.run_files import LEGACY_STATE, LOOP_STATE, Checkpoints, ResumeError, load_legacy_checkpoint
from train.stages import StageParts
from vlm_demo.precision import resolve_precision

log = logging.getLogger("train")
MIXED_PRECISION = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}  # our resolved precision -> accelerate's name


def device_type() -> str:
    """The device accelerate will pick, known before it starts (the precision must be chosen first)."""
    if os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes"):
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    return "mps" if torch.backends.mps.is_available() else "cpu"


def installed_trackers(names: list[str]) -> list:
    """The accelerate trackers among `names` whose package is installed; the others are skipped with a note."""
    available = {str(tracker) for tracker in get_available_trackers()}
    missing = [name for name in names if name not in available]
    if missing:
        log.warning("trackers not installed, skipped: %s (pip install the tracker's package; metrics.csv/jsonl are "
                    "written anyway)", ", ".join(missing))
    return [name for name in names if name in available]


def make_accelerator(config: TrainConfig, output: Path, trackers: list) -> tuple[Accelerator, str]:
    """One accelerator per run: the global batch is split across processes (same batches whatever their number)."""
    precision = resolve_precision(config.train.precision, device_type())
    AcceleratorState._reset_state()  # a later run in the same process (tests, notebooks) may pick another precision
    accelerator = Accelerator(mixed_precision=MIXED_PRECISION[precision],
                              gradient_accumulation_steps=config.train.grad_accum,
                              dataloader_config=DataLoaderConfiguration(split_batches=True),
                              log_with=trackers or None, project_dir=str(output))
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched != accelerator.num_processes:
        raise ValueError(f"{launched} processes were launched but accelerate joined {accelerator.num_processes}: "
                         "without a GPU set ACCELERATE_USE_CPU=1 (gloo), e.g. ACCELERATE_USE_CPU=1 accelerate launch "
                         "--multi_gpu --num_processes 2 -m train ...")
    if config.train.batch_size % accelerator.num_processes:
        raise ValueError(f"train.batch_size={config.train.batch_size} is the global batch: it must be a multiple of "
                         f"the {accelerator.num_processes} processes")
    return accelerator, precision


def save_trainable_only(accelerator: Accelerator) -> None:
    """Checkpoints hold the adapter whole and, of any other prepared model (a LoRA-wrapped LLM), only what trains;
    keys are the unwrapped module's, so a checkpoint resumes whatever the process count."""

    def save_hook(models: list, weights: list, output_dir: str) -> None:
        for index, model in enumerate(models):
            module = accelerator.unwrap_model(model)
            names = {n for n, p in module.named_parameters() if p.requires_grad}
            kept, seen = {}, set()
            for key, value in module.state_dict().items():  # tied tensors (tinylm's table) are stored once
                if (index == 0 or key in names) and (value.data_ptr(), value.shape) not in seen:
                    seen.add((value.data_ptr(), value.shape))
                    kept[key] = value.contiguous()
            weights[index] = kept

    def load_hook(models: list, input_dir: str) -> None:
        for index, model in enumerate(models):
            module = accelerator.unwrap_model(model)
            file = Path(input_dir) / ("model.safetensors" if index == 0 else f"model_{index}.safetensors")
            device = str(next(module.parameters()).device)
            missing, _ = load_model(module, file, strict=index == 0, device=device)
            lost = {n for n, p in module.named_parameters() if p.requires_grad} & set(missing)
            if lost:
                raise ResumeError(f"--resume: {file} lacks trainable weights such as {sorted(lost)[:2]}")
        models.clear()  # loaded here: accelerate must not load them again

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)


def restore(accelerator: Accelerator, latest: Path, parts: StageParts, optimizer, scheduler, config: TrainConfig
             ) -> dict:
    if not (latest / LOOP_STATE).is_file():
        if accelerator.num_processes > 1:
            raise ResumeError(f"--resume: {latest} is an older-format checkpoint ({LEGACY_STATE}); resume it in one "
                              "process")
        modules = [accelerator.unwrap_model(m) for m in [parts.adapter, *parts.extra_trainable]]
        return load_legacy_checkpoint(latest, modules, optimizer, scheduler)
    state = json.loads((latest / LOOP_STATE).read_text())
    for key in ("batch_size", "grad_accum"):
        if state[key] != getattr(config.train, key):
            raise ResumeError(f"--resume: {latest.name} was written with train.{key}={state[key]}, not "
                              f"{getattr(config.train, key)}; resume with the same value")
    if not (latest / f"random_states_{accelerator.process_index}.pkl").is_file():
        log.warning("%s holds no RNG state for process %d: dropout will differ from an uninterrupted run",
                    latest.name, accelerator.process_index)
    accelerator.load_state(str(latest))
    accelerator.step = state["micro_batches"]
    return state


def checkpoint(accelerator: Accelerator, checkpoints: Checkpoints, step: int, loop_state: dict) -> None:
    """Every process writes its part (its RNG state; the main process the weights and optimizer), then the main
    process fsyncs the folder and renames it into place."""
    if accelerator.is_main_process:
        checkpoints.start(step)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(checkpoints.staging(step)))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        checkpoints.commit(step, loop_state)
    accelerator.wait_for_everyone()
