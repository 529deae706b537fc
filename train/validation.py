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


ITEM_LOSSES = "val_items.json"


def item_losses(folder: Path) -> list[float]:
    """Each validation sample's own loss (a batch of one, no gradients) under a finished run's final adapter, in the
    order of the validation split: the per-item losses of the run's last validation, for a bootstrap over seeds and
    items. Rebuilt from the run's config.json with the adapter started from `folder/adapter` (a throw-away output
    folder; the run's own files are not touched) and kept as folder/val_items.json (computed once). A frozen
    encoder only: a run that tuned its encoder keeps one loss per seed."""
    import json
    import tempfile

    from train.config import load_config
    from train.loop import StageRun
    from train.study.runs import toml_value

    folder = Path(folder)
    kept = folder / ITEM_LOSSES
    if kept.is_file():
        return json.loads(kept.read_text())["losses"]
    saved = json.loads((folder / "config.json").read_text())
    stage = saved.pop("stage")
    if saved["model"]["encoder_mode"] != "frozen":
        raise ValueError(f"{folder}: per-item validation losses need a frozen encoder")
    with tempfile.TemporaryDirectory() as scratch:
        sections = [f"{key}={toml_value(value)}" for key, value in saved.items() if key != "output_dir"]
        config = load_config(None, [*sections, f'output_dir="{scratch}"',
                                    f'model.init_from="{folder / "adapter"}"', "train.trackers=[]"])
        run = StageRun(stage, config, resume=False, progress=False)
        run.build_models()
        run.load_data()
        run.live = None
        run.adapter.eval()
        losses = []
        with torch.no_grad():
            for sample in run.val_samples:
                with run.accelerator.autocast():
                    losses.append(float(run.parts.loss(Batch(run.features_of([sample]), [sample],
                                                             run.teacher_of([sample])))))
    kept.write_text(json.dumps({"losses": losses, "samples": len(losses)}))
    return losses
