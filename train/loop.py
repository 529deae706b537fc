"""The training loop on accelerate: batches sharded across processes, autocast around every forward, synchronised
gradients, main-process-only writes, exact resume from atomic checkpoints."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from train.accelerated import (  # noqa: F401 - device_type is imported from here too
    checkpoint,
    device_type,
    installed_trackers,
    make_accelerator,
    restore,
    save_trainable_only,
)
from train.config import TrainConfig
from train.data import Sample, load_dataset
from train.encoder_training import LiveFeatures, prepare_encoder, set_training
from train.features import FeatureCache, cache_precision
from train.pseudo_captions import captioning_head, write_head_captions
from train.run_files import Checkpoints, MetricsLog, write_atomic
from train.stages import Batch, Needs
from train.stages.registry import get_stage
from train.validation import SNAPSHOTS, save_adapter_folder, snapshot_name, validation_loss
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


def _batch(features: EncoderOutput, rows: dict[str, int], samples: list[Sample], teacher, device) -> Batch:
    index = torch.tensor([rows[s.image_id] for s in samples])
    picked = features[index].to(device, torch.float32)
    return Batch(picked, samples, None if teacher is None else teacher[index].to(device, torch.float32))


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


def _cached_features(encoder, teacher_encoder, adapter: Adapter, samples: list[Sample], precision: str,
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


def train_stage(stage: str, config: TrainConfig, resume: bool = False, progress: bool = True) -> Path:
    """Run a registered stage (`align`, `caption`, `decoder`); returns the folder holding the final adapter."""
    spec = get_stage(stage)
    needs = spec.needs(config)
    output = Path(config.output_dir)
    checkpoints = checkpoints_of(config)
    latest = checkpoints.resume_point() if resume else None
    if not resume and checkpoints.latest() is not None:
        raise ValueError(f"{output} already holds checkpoints: pass --resume to continue, or pick another output_dir")
    accelerator, precision = make_accelerator(config, output, installed_trackers(config.train.trackers))
    main, device = accelerator.is_main_process, accelerator.device
    if config.model.encoder_mode == "joint" and accelerator.num_processes > 1:
        raise ValueError("model.encoder_mode='joint' trains the encoder in one process only")
    if main:
        output.mkdir(parents=True, exist_ok=True)
        write_atomic(output / "config.json", json.dumps({"stage": stage, **config.to_dict()}, indent=2))
    torch.manual_seed(config.train.seed)
    random.seed(config.train.seed)

    encoder = build_encoder(config.model.encoder).to(device)
    encoder_trains, encoder_saved = prepare_encoder(config, encoder)
    llm, teacher_encoder = load_needs(needs, config, precision, device)
    target_name, target_width = ((teacher_encoder.name, teacher_encoder.embed_dim) if teacher_encoder is not None
                                 else (llm.name, llm.hidden_size))
    adapter = make_adapter(config, encoder, target_name, target_width, llm).to(device)
    parts = spec.build(config, adapter, llm)

    samples = gather_samples(config.data.train, "train")
    val_samples = gather_samples(config.data.val, "val")
    if not samples:
        raise ValueError("the training data is empty")
    started = time.perf_counter()
    with accelerator.main_process_first():  # the others then read the cache the main process filled
        features, rows, teacher = _cached_features(encoder, teacher_encoder, adapter, samples + val_samples,
                                                   precision, progress and main)
    head, head_features, head_rows = captioning_head(samples + val_samples, encoder, features, rows,
                                                     cache_precision(precision), progress and main)
    samples = write_head_captions(samples, head_features, head_rows, head, config.train.seed)
    val_samples = write_head_captions(val_samples, head_features, head_rows, head, config.train.seed)
    feature_seconds = time.perf_counter() - started

    def trainable_of(*modules: torch.nn.Module) -> list[torch.nn.Parameter]:
        return [p for module in modules for p in module.parameters() if p.requires_grad]

    if parts.llm_lr is None:  # one group, as checkpoints before lora_lr were saved
        groups = [{"params": trainable_of(adapter, *parts.extra_trainable), "lr": config.train.lr}]
    else:
        groups = [{"params": trainable_of(adapter), "lr": config.train.lr},
                  {"params": trainable_of(*parts.extra_trainable), "lr": parts.llm_lr}]
    if encoder_trains:
        set_training(encoder)
        groups.append({"params": trainable_of(encoder), "lr": config.model.encoder_lr})
    trainable = [p for group in groups for p in group["params"]]
    optimizer = torch.optim.AdamW(groups, weight_decay=config.train.weight_decay)
    batch_size = config.train.batch_size
    order = EpochOrder(len(samples), config.train.seed)
    data_order = hashlib.sha1("\n".join(samples[i].image_id + samples[i].target for i in order).encode()).hexdigest()
    # its own generator: an iterator started mid-epoch on resume must not draw from the global RNG (dropout's)
    loader = DataLoader(Positions(len(samples)), batch_size=batch_size, sampler=order, collate_fn=torch.tensor,
                        generator=torch.Generator().manual_seed(config.train.seed))
    updates_per_epoch = max(1, len(loader) // config.train.grad_accum)
    total_updates = config.train.max_steps or updates_per_epoch * config.train.epochs
    scheduler = warmup_cosine(optimizer, min(config.train.warmup_steps, total_updates // 10), total_updates)
    save_trainable_only(accelerator)
    modules = [parts.adapter, *parts.extra_trainable] + ([encoder] if encoder_trains else [])
    prepared = accelerator.prepare(*modules, optimizer, loader, scheduler)
    models, (optimizer, loader, scheduler) = list(prepared[:-3]), prepared[-3:]
    parts.adapter = models[0]
    if parts.llm is not None:
        parts.llm = models[1]
    if encoder_trains:
        encoder = models[-1]
    if main:
        accelerator.init_trackers(config.name, {"stage": stage, "batch_size": batch_size, "lr": config.train.lr})

    live = LiveFeatures(encoder) if encoder_trains else None

    def features_of(chosen: list[Sample]) -> EncoderOutput:
        if live is not None:
            return live(chosen, device)
        return features[torch.tensor([rows[s.image_id] for s in chosen])].to(device, torch.float32)

    def teacher_of(chosen: list[Sample]) -> torch.Tensor | None:
        return None if teacher is None else teacher[torch.tensor([rows[s.image_id] for s in chosen])].to(
            device, torch.float32)

    step, epoch, batch_in_epoch = 0, 0, 0
    if latest is not None:
        state = restore(accelerator, latest, parts, optimizer, scheduler, config)
        step, epoch, batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        log.info("resumed from %s (step %d, epoch %d, batch %d)", latest, step, epoch, batch_in_epoch)
    first_step = step
    metrics = MetricsLog(output, resumed_step=step if latest is not None else None) if main else None
    saved_encoder = encoder if encoder_saved else None

    def validate() -> None:
        loss = validation_loss(parts, val_samples, features_of, teacher_of, config.eval.batch_size, accelerator,
                               models, encoder if encoder_trains else None)
        if main:
            metrics.write_extra({"step": step, "epoch": epoch, "val_loss": loss, "val_samples": len(val_samples)})

    def snapshot(done_epochs: int | None) -> None:
        if config.train.snapshots and main:
            save_adapter_folder(output / SNAPSHOTS / snapshot_name(step, done_epochs), accelerator, parts,
                                saved_encoder)

    for model in models:
        model.train()
    if encoder_trains:
        set_training(accelerator.unwrap_model(encoder))
    if step == 0:
        if val_samples:
            validate()
        snapshot(None)
    window: list[float] = []
    seen_since_log, log_clock, run_clock = 0, time.perf_counter(), time.perf_counter()
    bar = tqdm(total=total_updates, initial=step, desc=f"{stage} {config.name}", unit="step",
               disable=not (progress and main))
    while step < total_updates:
        order.epoch = epoch
        batches = accelerator.skip_first_batches(loader, batch_in_epoch) if batch_in_epoch else loader
        for positions in batches:
            chosen = [samples[i] for i in positions.tolist()]
            batch_in_epoch += 1
            with accelerator.accumulate(*models):
                with accelerator.autocast():
                    loss = parts.loss(Batch(features_of(chosen), chosen, teacher_of(chosen)))
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(trainable, 1.0)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            window.append(accelerator.reduce(loss.detach().float(), "mean").item())
            seen_since_log += len(chosen) * accelerator.num_processes
            if not accelerator.sync_gradients:
                continue
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{window[-1]:.3f}")
            if step % config.train.log_every == 0 or step == total_updates:
                now = time.perf_counter()
                record = {"step": step, "epoch": epoch, "loss": sum(window) / len(window),
                          "lr": scheduler.get_last_lr()[0], "samples_per_s": seen_since_log / (now - log_clock),
                          "elapsed_s": now - run_clock}
                if encoder_trains:
                    record["encoder_lr"] = scheduler.get_last_lr()[1]
                if main:
                    metrics.write(record)
                accelerator.log({k: v for k, v in record.items() if k != "step"}, step=step)
                window, seen_since_log, log_clock = [], 0, now
            epoch_done = batch_in_epoch == len(loader)
            if val_samples and (step % config.train.val_every == 0 if config.train.val_every else epoch_done):
                validate()
            if epoch_done:
                snapshot(epoch + 1)
            if step % config.train.save_every == 0 or step == total_updates:
                checkpoint(accelerator, checkpoints, step, {
                    "step": step, "epoch": epoch, "batch_in_epoch": batch_in_epoch, "micro_batches": accelerator.step,
                    "batch_size": batch_size, "grad_accum": config.train.grad_accum,
                    "processes": accelerator.num_processes})
            if step >= total_updates:
                break
        else:
            epoch, batch_in_epoch = epoch + 1, 0
    bar.close()

    accelerator.wait_for_everyone()
    final = output / "adapter"
    if main:
        save_adapter_folder(final, accelerator, parts, saved_encoder)
        summary = {"stage": stage, "steps": step, "batch_size": batch_size, "samples": len(samples),
                   "images": len({s.image_id for s in samples}), "train_seconds": time.perf_counter() - run_clock,
                   "feature_seconds": feature_seconds, "trainable_parameters": sum(p.numel() for p in trainable),
                   "device": str(device), "precision": precision, "processes": accelerator.num_processes,
                   "grad_accum": config.train.grad_accum, "resumed_from": latest.name if latest else None,
                   "steps_this_run": step - first_step, "encoder_mode": config.model.encoder_mode,
                   "validation_samples": len(val_samples), "data_order": data_order}
        write_atomic(output / "summary.json", json.dumps(summary, indent=2))
        log.info("saved %s (%s)", final, summary)
    accelerator.end_training()
    return final
