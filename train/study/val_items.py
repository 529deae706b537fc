"""Per-item losses of a finished study run, for the bootstrap over seeds and items: each validation (or training)
sample's own loss under the run's final adapter, computed once and kept beside the run."""

from __future__ import annotations

from pathlib import Path

import torch

from train.stages import Batch

ITEM_LOSSES = {"val": "val_items.json", "train": "train_items.json"}


def item_losses(folder: Path, split: str = "val") -> list[float]:
    """Each validation sample's own loss (a batch of one, no gradients) under a finished run's final adapter, in the
    order of the validation split: the per-item losses of the run's last validation, for a bootstrap over seeds and
    items; `split="train"`: each training sample's (the final training loss, item by item). Rebuilt from the run's
    config.json with the adapter started from `folder/adapter` (a throw-away output folder; the run's own files are
    not touched) and kept as folder/val_items.json or train_items.json (computed once). A frozen encoder only: a run
    that tuned its encoder keeps one loss per seed."""
    import json
    import tempfile

    from train.config import load_config, toml_value
    from train.loop import StageRun

    folder = Path(folder)
    kept = folder / ITEM_LOSSES[split]
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
            for sample in run.val_samples if split == "val" else run.samples:
                with run.accelerator.autocast():
                    losses.append(float(run.parts.loss(Batch(run.features_of([sample]), [sample],
                                                             run.teacher_of([sample])))))
    kept.write_text(json.dumps({"losses": losses, "samples": len(losses)}))
    return losses
