"""The training loop on accelerate: batches sharded across processes, autocast around every forward, synchronised
gradients, main-process-only writes, exact resume from atomic checkpoints."""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from pathlib import Path

import torch
from accelerate import Accelerator, DataLoaderConfiguration
from accelerate.state import AcceleratorState
from accelerate.tracking import get_available_trackers
from safetensors.torch import load_model
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from train.config import TrainConfig
from train.data import Sample, load_dataset
from train.features import FeatureCache
from train.pseudo_captions import write_head_captions
from train.run_files import (
    LEGACY_STATE,
    LOOP_STATE,
    Checkpoints,
    MetricsLog,
    ResumeError,
    atomic_folder,
    load_legacy_checkpoint,
    write_atomic,
)
from train.stages import Batch, Needs, StageParts
from train.stages.registry import get_stage
from vlm_demo.adapters import LORA_FOLDER, Adapter, adapter_for
from vlm_demo.encoders import EncoderOutput, build_encoder
from vlm_demo.llms import LanguageModel, load_llm
from vlm_demo.precision import compute_dtype, resolve_precision

log = logging.getLogger("train")
MIXED_PRECISION = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}  # our resolved precision -> accelerate's name


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
        log.info("trackers not installed, skipped: %s (metrics.csv/jsonl are written anyway)", ", ".join(missing))
    return [name for name in names if name in available]


def _cached_features(encoder, teacher_encoder, adapter: Adapter, samples: list[Sample], precision: str,
                     progress: bool) -> tuple[EncoderOutput, dict[str, int], torch.Tensor | None]:
    """The frozen encoder's features of every training image (and the teacher's tokens to imitate), from the cache."""
    feature_precision = "bf16" if precision == "bf16" else "fp32"  # fp16 runs read fp32 features
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


def _accelerator(config: TrainConfig, output: Path) -> tuple[Accelerator, str]:
    """One accelerator per run: the global batch is split across processes (same batches whatever their number)."""
    precision = resolve_precision(config.train.precision, device_type())
    AcceleratorState._reset_state()  # a later run in the same process (tests, notebooks) may pick another precision
    accelerator = Accelerator(mixed_precision=MIXED_PRECISION[precision],
                              gradient_accumulation_steps=config.train.grad_accum,
                              dataloader_config=DataLoaderConfiguration(split_batches=True),
                              log_with=installed_trackers(config.train.trackers) or None, project_dir=str(output))
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched != accelerator.num_processes:
        raise ValueError(f"{launched} processes were launched but accelerate joined {accelerator.num_processes}: "
                         "without a GPU set ACCELERATE_USE_CPU=1 (gloo), e.g. ACCELERATE_USE_CPU=1 accelerate launch "
                         "--multi_gpu --num_processes 2 -m train ...")
    if config.train.batch_size % accelerator.num_processes:
        raise ValueError(f"train.batch_size={config.train.batch_size} is the global batch: it must be a multiple of "
                         f"the {accelerator.num_processes} processes")
    return accelerator, precision


def _save_trainable_only(accelerator: Accelerator) -> None:
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


def _restore(accelerator: Accelerator, latest: Path, parts: StageParts, optimizer, scheduler, config: TrainConfig
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


def train_stage(stage: str, config: TrainConfig, resume: bool = False, progress: bool = True) -> Path:
    """Run a registered stage (`align`, `caption`); returns the folder holding the final adapter checkpoint."""
    spec = get_stage(stage)
    needs = spec.needs(config)
    output = Path(config.output_dir)
    checkpoints = Checkpoints(output / "checkpoints", config.train.keep_checkpoints)
    latest = checkpoints.resume_point() if resume else None
    if not resume and checkpoints.latest() is not None:
        raise ValueError(f"{output} already holds checkpoints: pass --resume to continue, or pick another output_dir")
    accelerator, precision = _accelerator(config, output)
    main, device = accelerator.is_main_process, accelerator.device
    if main:
        output.mkdir(parents=True, exist_ok=True)
        write_atomic(output / "config.json", json.dumps({"stage": stage, **config.to_dict()}, indent=2))
    torch.manual_seed(config.train.seed)
    random.seed(config.train.seed)

    encoder = build_encoder(config.model.encoder).to(device)
    llm, teacher_encoder = load_needs(needs, config, precision, device)
    target_name, target_width = ((teacher_encoder.name, teacher_encoder.embed_dim) if teacher_encoder is not None
                                 else (llm.name, llm.hidden_size))
    adapter = make_adapter(config, encoder, target_name, target_width, llm).to(device)
    parts = spec.build(config, adapter, llm)

    samples = gather_samples(config.data.train, "train")
    if not samples:
        raise ValueError("the training data is empty")
    started = time.perf_counter()
    with accelerator.main_process_first():  # the others then read the cache the main process filled
        features, rows, teacher = _cached_features(encoder, teacher_encoder, adapter, samples, precision,
                                                   progress and main)
    samples = write_head_captions(samples, features, rows, encoder.class_head, config.train.seed)
    feature_seconds = time.perf_counter() - started

    trainable = [p for module in [adapter, *parts.extra_trainable] for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.train.lr, weight_decay=config.train.weight_decay)
    batch_size = config.train.batch_size
    order = EpochOrder(len(samples), config.train.seed)
    # its own generator: an iterator started mid-epoch on resume must not draw from the global RNG (dropout's)
    loader = DataLoader(Positions(len(samples)), batch_size=batch_size, sampler=order, collate_fn=torch.tensor,
                        generator=torch.Generator().manual_seed(config.train.seed))
    updates_per_epoch = max(1, len(loader) // config.train.grad_accum)
    total_updates = config.train.max_steps or updates_per_epoch * config.train.epochs
    scheduler = warmup_cosine(optimizer, min(config.train.warmup_steps, total_updates // 10), total_updates)
    _save_trainable_only(accelerator)
    prepared = accelerator.prepare(parts.adapter, *parts.extra_trainable, optimizer, loader, scheduler)
    parts.adapter, optimizer, loader, scheduler = prepared[0], *prepared[-3:]
    if parts.llm is not None:
        parts.llm = prepared[1]
    models = prepared[:-3]
    if main:
        accelerator.init_trackers(config.name, {"stage": stage, "batch_size": batch_size, "lr": config.train.lr})

    step, epoch, batch_in_epoch = 0, 0, 0
    if latest is not None:
        state = _restore(accelerator, latest, parts, optimizer, scheduler, config)
        step, epoch, batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        log.info("resumed from %s (step %d, epoch %d, batch %d)", latest, step, epoch, batch_in_epoch)
    first_step = step
    metrics = MetricsLog(output, resumed_step=step if latest is not None else None) if main else None

    for model in models:
        model.train()
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
                    loss = parts.loss(_batch(features, rows, chosen, teacher, device))
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
                if main:
                    metrics.write(record)
                accelerator.log({k: v for k, v in record.items() if k != "step"}, step=step)
                window, seen_since_log, log_clock = [], 0, now
            if step % config.train.save_every == 0 or step == total_updates:
                _checkpoint(accelerator, checkpoints, step, {
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
        with atomic_folder(final) as staging:
            accelerator.unwrap_model(parts.adapter).save_pretrained(staging)
            if parts.save_extra:
                parts.save_extra(str(staging / LORA_FOLDER))
        summary = {"stage": stage, "steps": step, "batch_size": batch_size, "samples": len(samples),
                   "images": len(rows), "train_seconds": time.perf_counter() - run_clock,
                   "feature_seconds": feature_seconds, "trainable_parameters": sum(p.numel() for p in trainable),
                   "device": str(device), "precision": precision, "processes": accelerator.num_processes,
                   "grad_accum": config.train.grad_accum, "resumed_from": latest.name if latest else None,
                   "steps_this_run": step - first_step}
        write_atomic(output / "summary.json", json.dumps(summary, indent=2))
        log.info("saved %s (%s)", final, summary)
    accelerator.end_training()
    return final


def _checkpoint(accelerator: Accelerator, checkpoints: Checkpoints, step: int, loop_state: dict) -> None:
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
