"""A trainable encoder (the ResNet->ViT seed): `frozen` reads cached features; `joint` trains the encoder with the
adapter at its own learning rate, BatchNorm kept frozen (running statistics and affine weights); `sequential`
starts from the jointly tuned encoder saved in `model.init_from` and keeps it frozen while the adapter trains.
Whenever the encoder is not the packaged one, its weights go into the adapter folder as `encoder.safetensors`."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_model
from torch import nn

from train.config import TrainConfig
from train.data import Sample
from vlm_demo.adapters import ENCODER_WEIGHTS
from vlm_demo.checkpoint import Checkpoint
from vlm_demo.encoders import EncoderOutput, VisionEncoder

ENCODER_MODES = ("frozen", "joint", "sequential")


def freeze_batchnorm(encoder: nn.Module) -> None:
    """Every BatchNorm in eval mode (running statistics fixed) with its affine weights frozen."""
    for module in encoder.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()
            module.requires_grad_(False)


def set_training(encoder: nn.Module) -> None:
    """Training mode for everything but BatchNorm (call after any `.train()` of the encoder)."""
    encoder.train()
    freeze_batchnorm(encoder)


def prepare_encoder(config: TrainConfig, encoder: VisionEncoder) -> tuple[bool, bool]:
    """Load a fine-tuned encoder from `model.init_from` and set what trains: (the encoder trains, it is saved)."""
    mode = config.model.encoder_mode
    start = Checkpoint.resolve(config.model.init_from) if config.model.init_from else None
    if mode == "sequential" and not (start and start.encoder_weights):
        raise ValueError("model.encoder_mode='sequential' continues a joint run: model.init_from must name an adapter "
                         f"folder holding {ENCODER_WEIGHTS}")
    tuned = start is not None and start.load_encoder_weights(encoder)
    if mode != "joint":
        encoder.eval().requires_grad_(False)
        return False, bool(tuned)
    if not any(True for _ in encoder.parameters()):
        raise ValueError(f"encoder '{encoder.name}' has no trainable weights (an ONNX graph?): use encoder_mode "
                         "'frozen'")
    encoder.eval().requires_grad_(True)  # the loop calls set_training once the starting features are cached
    freeze_batchnorm(encoder)
    return True, True


def save_encoder(encoder: nn.Module, folder: Path) -> None:
    """The whole encoder state (weights and frozen BatchNorm statistics) beside the adapter."""
    save_model(encoder, str(Path(folder) / ENCODER_WEIGHTS))


class LiveFeatures:
    """Features of a batch computed by the training encoder (with gradients), from preprocessed pixels kept in
    memory per image."""

    def __init__(self, encoder: VisionEncoder) -> None:
        self.encoder, self.pixels = encoder, {}

    def __call__(self, samples: list[Sample], device: torch.device) -> EncoderOutput:
        module = getattr(self.encoder, "module", self.encoder)  # accelerate may wrap it
        missing = [s for s in {s.image_id: s for s in samples}.values() if s.image_id not in self.pixels]
        if missing:
            batch = module.preprocess([s.load_image() for s in missing])
            self.pixels.update({s.image_id: row for s, row in zip(missing, batch)})
        pixels = torch.stack([self.pixels[s.image_id] for s in samples]).to(device)
        return module.encode(pixels)
