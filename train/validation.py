"""During training: the loss on the validation splits (`data.val`, written to metrics.jsonl as `val_loss`) and
loadable snapshots (an adapter folder: config.json + model.safetensors, with lora/ and encoder.safetensors where
they train) at step 0 and at the end of each epoch, under `snapshots/`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from accelerate import Accelerator

from train.data import Sample
from train.encoder_training import save_encoder, set_training
from train.run_files import atomic_folder
from train.stages import Batch, StageParts
from vlm_demo.adapters import LORA_FOLDER
from vlm_demo.encoders import EncoderOutput

SNAPSHOTS = "snapshots"


def snapshot_name(step: int, epoch: int | None = None) -> str:
    """`step-0000000` before training, `epoch-001` after the first epoch, ..."""
    return f"epoch-{epoch:03d}" if epoch is not None else f"step-{step:07d}"


def save_adapter_folder(target: Path, accelerator: Accelerator, parts: StageParts, encoder=None) -> Path:
    """The adapter (and its LoRA, and the encoder when it is not the packaged one) as one loadable folder."""
    with atomic_folder(target) as staging:
        accelerator.unwrap_model(parts.adapter).save_pretrained(staging)
        if parts.save_extra:
            parts.save_extra(str(staging / LORA_FOLDER))
        if encoder is not None:
            save_encoder(accelerator.unwrap_model(encoder), staging)
    return target


def validation_loss(parts: StageParts, samples: list[Sample], features_of: Callable[[list[Sample]], EncoderOutput],
                    teacher_of: Callable[[list[Sample]], torch.Tensor | None], batch_size: int,
                    accelerator: Accelerator, models: list, encoder=None) -> float:
    """Mean loss over the validation samples (sample-weighted), every trained module in eval mode, no gradients;
    the modules go back to training mode (BatchNorm of a training encoder stays frozen)."""
    for model in models:
        model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(samples), batch_size):
            chosen = samples[start:start + batch_size]
            with accelerator.autocast():
                loss = parts.loss(Batch(features_of(chosen), chosen, teacher_of(chosen)))
            total, count = total + float(loss) * len(chosen), count + len(chosen)
    for model in models:
        model.train()
    if encoder is not None:
        set_training(accelerator.unwrap_model(encoder))
    return total / max(1, count)
