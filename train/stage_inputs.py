"""What a stage run is made of: its samples, the models a stage asks for, the frozen encoder's cached features, the
epoch order and the learning-rate schedule."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch
from torch.utils.data import Dataset, Sampler

from train.config import TrainConfig
from train.data import Sample, load_dataset
from train.features import FeatureCache, cache_precision
from train.run_files import Checkpoints
from train.stages import Needs
from vlm_demo.adapters import Adapter, adapter_for
from vlm_demo.encoders import EncoderOutput, build_encoder
from vlm_demo.llms import LanguageModel, load_llm
from vlm_demo.precision import compute_dtype

log = logging.getLogger("train")


def gather_samples(entries: list[dict], split: str) -> list[Sample]:
    samples = []
    for entry in entries:
        options = {k: v for k, v in entry.items() if k not in ("name", "count")}
        samples.extend(load_dataset(entry["name"], split, entry.get("count"), **options))
    return samples


def make_adapter(config: TrainConfig, encoder, target_name: str, target_width: int,
                 llm: LanguageModel | None = None) -> Adapter:
    """The adapter to train: `model.init_from` if set, else a new one of `model.adapter` with its options."""
    return adapter_for(encoder, target_name, target_width, config.model.adapter, config.model.adapter_options,
                       checkpoint=config.model.init_from or None, llm=llm).train()


def warmup_cosine(optimizer: torch.optim.Optimizer, warmup: int, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up then cosine decay to zero (transformers' helper would import peft and bitsandbytes)."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def teacher_tokens(tokens: torch.Tensor, wanted: int) -> torch.Tensor:
    """The teacher's tokens to imitate; a ViT's leading CLS token is dropped when only the patch grid fits."""
    if tokens.shape[1] == wanted + 1:
        return tokens[:, 1:]
    if tokens.shape[1] != wanted:
        raise ValueError(f"the adapter emits {wanted} tokens but the teacher has {tokens.shape[1]}; "
                         "set the adapter's grid/token count to match")
    return tokens


class Positions(Dataset):
    """Sample positions 0..n-1; the loop looks the samples and their cached features up itself."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> int:
        return index


class EpochOrder(Sampler[int]):
    """The same seeded shuffle on every process, new each epoch. The loop sets `epoch` (no `set_epoch` on purpose:
    accelerate would reset it to its own iteration count on a loader rebuilt to skip batches)."""

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.seed, self.epoch = size, seed, 0

    def __len__(self) -> int:
        return self.size

    def __iter__(self):
        yield from torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed + self.epoch)).tolist()


def gathered(table: EncoderOutput | torch.Tensor, rows: dict[str, int], chosen: list[Sample],
             device: torch.device | str) -> EncoderOutput | torch.Tensor:
    """The rows of a cached table (features, or teacher tokens) for the chosen samples, on `device` in float32."""
    return table[torch.tensor([rows[s.image_id] for s in chosen])].to(device, torch.float32)


def load_needs(needs: Needs, config: TrainConfig, precision: str, device: torch.device
               ) -> tuple[LanguageModel | None, object]:
    """The LLM and teacher encoder a stage asked for (None where it asked for none)."""
    teacher = build_encoder(needs.teacher).to(device) if needs.teacher else None
    llm = None
    if needs.llm:
        dtype = compute_dtype(precision) if needs.llm_runs else torch.float32  # align reads only the table
        llm = load_llm(config.model.llm, quantization=needs.quantization, dtype=dtype)
        if not needs.quantization:
            llm.model.to(device)
    return llm, teacher


def cached_features(encoder, teacher_encoder, adapter: Adapter, samples: list[Sample], precision: str,
                     progress: bool) -> tuple[EncoderOutput, dict[str, int], torch.Tensor | None]:
    """The frozen encoder's features of every training image (and the teacher's tokens to imitate), from the cache."""
    feature_precision = cache_precision(precision)
    cache = FeatureCache(encoder, keep_stages=adapter.needs_stage_maps, precision=feature_precision)
    features, rows = cache.features(samples, progress=progress)
    log.info("features: %d images (%d cached, %d computed); precision %s", len(rows), cache.hits, cache.misses,
             precision)
    if teacher_encoder is None:
        return features, rows, None
    teacher_features, teacher_rows = FeatureCache(teacher_encoder, precision=feature_precision).features(
        samples, progress=progress)
    aligned = torch.tensor([teacher_rows[image_id] for image_id in rows])
    return features, rows, teacher_tokens(teacher_features.tokens[aligned], adapter.num_output_tokens)


def checkpoints_of(config: TrainConfig) -> Checkpoints:
    """The run's resumable checkpoints (under its output folder)."""
    return Checkpoints(Path(config.output_dir) / "checkpoints", config.train.keep_checkpoints)
