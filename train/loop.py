"""The training loop: accelerate, cached features, progress, metrics logs, atomic checkpoints, exact resume."""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import random
import shutil
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from safetensors.torch import load_model, save_model
from tqdm import tqdm

from train.config import TrainConfig
from train.data import Sample, load_dataset
from train.features import FeatureCache
from train.pseudo_captions import write_head_captions
from train.stages import Batch, StageParts
from train.stages.align import align_stage
from train.stages.caption import caption_stage
from vlm_demo.adapters import LORA_FOLDER, Adapter, adapter_for
from vlm_demo.encoders import EncoderOutput, build_encoder
from vlm_demo.llms import LanguageModel, load_llm
from vlm_demo.precision import compute_dtype, resolve_precision

log = logging.getLogger("train")
STATE_FILE = "training_state.pt"  # optimizer, scheduler, RNG and data position; tensors/primitives only


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


class Checkpoints:
    """checkpoint-<step>/ folders written to a temp name then renamed; `latest` names the newest."""

    def __init__(self, folder: Path, keep: int) -> None:
        self.folder, self.keep = folder, keep

    def latest(self) -> Path | None:
        pointer = self.folder / "latest"
        if not pointer.is_file():
            return None
        path = self.folder / pointer.read_text().strip()
        return path if path.is_dir() else None

    def save(self, step: int, adapter: Adapter, extra: list, state: dict) -> None:
        target = self.folder / f"checkpoint-{step:07d}"
        staging = self.folder / f".staging-{step:07d}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        save_model(adapter, str(staging / "adapter.safetensors"))
        for index, module in enumerate(extra):
            trainable = {k: v for k, v in module.state_dict().items() if "lora_" in k}
            torch.save(trainable, staging / f"extra{index}.pt")
        torch.save(state, staging / STATE_FILE)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
        pointer = self.folder / ".latest.tmp"
        pointer.write_text(target.name)
        os.replace(pointer, self.folder / "latest")
        for old in sorted(self.folder.glob("checkpoint-*"))[:-self.keep]:
            shutil.rmtree(old, ignore_errors=True)


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]),
             "python_version": random.getstate()[0], "python_gauss": random.getstate()[2]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((state["python_version"], tuple(state["python"]), state["python_gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class MetricsLog:
    def __init__(self, folder: Path, resume: bool) -> None:
        self.jsonl, self.csv = folder / "metrics.jsonl", folder / "metrics.csv"
        if not resume:
            self.jsonl.unlink(missing_ok=True)
            self.csv.unlink(missing_ok=True)
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.board = SummaryWriter(str(folder / "tensorboard"))
        except ImportError:
            self.board = None

    def write(self, record: dict) -> None:
        with self.jsonl.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        new = not self.csv.exists()
        with self.csv.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(record))
            if new:
                writer.writeheader()
            writer.writerow(record)
        if self.board:
            for key, value in record.items():
                if isinstance(value, float):
                    self.board.add_scalar(key, value, record["step"])


def _batch(features: EncoderOutput, rows: dict[str, int], samples: list[Sample], teacher, device) -> Batch:
    index = torch.tensor([rows[s.image_id] for s in samples])
    picked = features[index].to(device, torch.float32)
    return Batch(picked, samples, None if teacher is None else teacher[index].to(device, torch.float32))


def train_stage(stage: str, config: TrainConfig, resume: bool = False, progress: bool = True) -> Path:
    """Run `align` or `caption`; returns the folder holding the final adapter checkpoint."""
    output = Path(config.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    checkpoints = Checkpoints(output / "checkpoints", config.train.keep_checkpoints)
    if not resume and checkpoints.latest() is not None:
        raise ValueError(f"{output} already holds checkpoints: pass --resume to continue, or pick another output_dir")
    (output / "config.json").write_text(json.dumps({"stage": stage, **config.to_dict()}, indent=2))
    # Precision is ours (train.precision), not accelerate's: its autocast would wrap only the adapter.
    accelerator = Accelerator(mixed_precision="no", gradient_accumulation_steps=config.train.grad_accum)
    precision = resolve_precision(config.train.precision, accelerator.device)
    torch.manual_seed(config.train.seed)
    random.seed(config.train.seed)

    encoder = build_encoder(config.model.encoder).to(accelerator.device)
    distill = stage == "align" and config.align.loss != "emd"
    llm: LanguageModel | None = None
    teacher_encoder = None
    if distill:
        teacher_encoder = build_encoder(config.align.teacher).to(accelerator.device)
        target_name, target_width = teacher_encoder.name, teacher_encoder.embed_dim
    else:
        quantization = "4bit" if stage == "caption" and config.caption.llm_mode == "qlora" else None
        dtype = compute_dtype(precision) if stage == "caption" else torch.float32  # align reads only the table
        llm = load_llm(config.model.llm, quantization=quantization, dtype=dtype)
        if not quantization:
            llm.model.to(accelerator.device)
        target_name, target_width = llm.name, llm.hidden_size
    adapter = make_adapter(config, encoder, target_name, target_width, llm).to(accelerator.device)
    parts: StageParts = align_stage(config, adapter, llm) if stage == "align" else caption_stage(config, adapter, llm)

    samples = gather_samples(config.data.train, "train")
    if not samples:
        raise ValueError("the training data is empty")
    cache = FeatureCache(encoder, keep_stages=adapter.needs_stage_maps, precision=precision)
    started = time.perf_counter()
    features, rows = cache.features(samples, progress=progress)
    samples = write_head_captions(samples, features, rows, encoder.class_head, config.train.seed)
    teacher = None
    if teacher_encoder is not None:
        teacher_cache = FeatureCache(teacher_encoder, precision=precision)
        teacher_features, teacher_rows = teacher_cache.features(samples, progress=progress)
        order = torch.tensor([teacher_rows[image_id] for image_id in rows])
        teacher = teacher_tokens(teacher_features.tokens[order], adapter.num_output_tokens)
    feature_seconds = time.perf_counter() - started
    log.info("features: %d images (%d cached, %d computed) in %.1f s; precision %s", len(rows), cache.hits,
             cache.misses, feature_seconds, precision)

    trainable = [p for module in [adapter, *parts.extra_trainable] for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.train.lr, weight_decay=config.train.weight_decay)
    batch_size = config.train.batch_size
    batches_per_epoch = (len(samples) + batch_size - 1) // batch_size
    updates_per_epoch = max(1, batches_per_epoch // config.train.grad_accum)
    total_updates = config.train.max_steps or updates_per_epoch * config.train.epochs
    scheduler = warmup_cosine(optimizer, min(config.train.warmup_steps, total_updates // 10), total_updates)
    adapter, optimizer, scheduler = accelerator.prepare(adapter, optimizer, scheduler)

    step, epoch, batch_in_epoch = 0, 0, 0
    latest = checkpoints.latest() if resume else None
    if latest is not None:
        load_model(accelerator.unwrap_model(adapter), str(latest / "adapter.safetensors"))
        for index, module in enumerate(parts.extra_trainable):
            module.load_state_dict(torch.load(latest / f"extra{index}.pt", weights_only=True), strict=False)
        state = torch.load(latest / STATE_FILE, weights_only=True)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"])
        step, epoch, batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        log.info("resumed from %s (step %d, epoch %d, batch %d)", latest, step, epoch, batch_in_epoch)
    metrics = MetricsLog(output, resume=latest is not None)

    adapter.train()
    window: list[float] = []
    seen_since_log, log_clock, run_clock = 0, time.perf_counter(), time.perf_counter()
    bar = tqdm(total=total_updates, initial=step, desc=f"{stage} {config.name}", unit="step", disable=not progress)
    while step < total_updates:
        order = torch.randperm(len(samples), generator=torch.Generator().manual_seed(config.train.seed + epoch))
        chunks = [order[i:i + batch_size].tolist() for i in range(0, len(order), batch_size)]
        while batch_in_epoch < len(chunks) and step < total_updates:
            chosen = [samples[i] for i in chunks[batch_in_epoch]]
            batch_in_epoch += 1
            with accelerator.accumulate(adapter):
                loss = parts.loss(_batch(features, rows, chosen, teacher, accelerator.device))
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(trainable, 1.0)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            window.append(loss.item())
            seen_since_log += len(chosen)
            if not accelerator.sync_gradients:
                continue
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
            if step % config.train.log_every == 0 or step == total_updates:
                now = time.perf_counter()
                metrics.write({"step": step, "epoch": epoch, "loss": sum(window) / len(window),
                               "lr": scheduler.get_last_lr()[0], "samples_per_s": seen_since_log / (now - log_clock),
                               "elapsed_s": now - run_clock})
                window, seen_since_log, log_clock = [], 0, now
            if step % config.train.save_every == 0 or step == total_updates:
                state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                         "rng": _rng_state(), "step": step, "epoch": epoch, "batch_in_epoch": batch_in_epoch}
                checkpoints.save(step, accelerator.unwrap_model(adapter), parts.extra_trainable, state)
        if batch_in_epoch >= len(chunks):
            epoch, batch_in_epoch = epoch + 1, 0
    bar.close()

    final = output / "adapter"
    accelerator.unwrap_model(adapter).save_pretrained(final)
    if parts.save_extra:
        parts.save_extra(str(final / LORA_FOLDER))
    summary = {"stage": stage, "steps": step, "batch_size": batch_size, "samples": len(samples), "images": len(rows),
               "train_seconds": time.perf_counter() - run_clock, "feature_seconds": feature_seconds,
               "trainable_parameters": sum(p.numel() for p in trainable), "device": str(accelerator.device),
               "precision": precision}
    (output / "summary.json").write_text(json.dumps(summary, indent=2))
    log.info("saved %s (%s)", final, summary)
    return final
