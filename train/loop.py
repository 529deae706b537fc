"""The training loop on accelerate: batches sharded across processes, autocast around every forward, synchronised
gradients, main-process-only writes, exact resume from atomic checkpoints."""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader
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
from train.data import Sample
from train.encoder_training import LiveFeatures, prepare_encoder, set_training
from train.features import cache_precision
from train.pseudo_captions import captioning_head, write_head_captions
from train.run_files import MetricsLog, write_atomic
from train.stage_inputs import (  # noqa: F401 - gather_samples and teacher_tokens are imported from here too
    EpochOrder,
    Positions,
    cached_features,
    checkpoints_of,
    gather_samples,
    gathered,
    load_needs,
    make_adapter,
    teacher_tokens,
    warmup_cosine,
)
from train.stages import Batch
from train.stages.registry import get_stage
from train.validation import SNAPSHOTS, save_adapter_folder, snapshot_name, validation_loss
from vlm_demo.encoders import EncoderOutput, build_encoder

log = logging.getLogger("train")


def train_stage(stage: str, config: TrainConfig, resume: bool = False, progress: bool = True) -> Path:
    """Run a registered stage (`align`, `caption`, `decoder`); returns the folder holding the final adapter."""
    run = StageRun(stage, config, resume, progress)
    run.build_models()
    run.load_data()
    run.prepare_optimisation()
    run.train()
    return run.finish()


class StageRun:
    """One run of one stage, assembled in the order the methods of `train_stage` call; each step reads what the
    earlier ones set."""

    def __init__(self, stage: str, config: TrainConfig, resume: bool, progress: bool) -> None:
        self.stage, self.config, self.spec = stage, config, get_stage(stage)
        self.output = Path(config.output_dir)
        self.checkpoints = checkpoints_of(config)
        self.latest = self.checkpoints.resume_point() if resume else None
        if not resume and self.checkpoints.latest() is not None:
            raise ValueError(f"{self.output} already holds checkpoints: pass --resume to continue, or pick another "
                             "output_dir")
        self.accelerator, self.precision = make_accelerator(config, self.output,
                                                            installed_trackers(config.train.trackers))
        self.main, self.device = self.accelerator.is_main_process, self.accelerator.device
        self.progress = progress and self.main
        if config.model.encoder_mode == "joint" and self.accelerator.num_processes > 1:
            raise ValueError("model.encoder_mode='joint' trains the encoder in one process only")
        if self.main:
            self.output.mkdir(parents=True, exist_ok=True)
            write_atomic(self.output / "config.json", json.dumps({"stage": stage, **config.to_dict()}, indent=2))
        torch.manual_seed(config.train.seed)
        random.seed(config.train.seed)
        self.step = self.epoch = self.batch_in_epoch = 0

    def build_models(self) -> None:
        """The encoder (trained or frozen), the LLM and teacher the stage needs, the adapter and the stage's parts."""
        config = self.config
        self.encoder = build_encoder(config.model.encoder).to(self.device)
        self.encoder_trains, encoder_saved = prepare_encoder(config, self.encoder)
        llm, self.teacher_encoder = load_needs(self.spec.needs(config), config, self.precision, self.device)
        target = self.teacher_encoder
        target_name, target_width = (target.name, target.embed_dim) if target is not None else (llm.name,
                                                                                               llm.hidden_size)
        self.adapter = make_adapter(config, self.encoder, target_name, target_width, llm).to(self.device)
        self.parts = self.spec.build(config, self.adapter, llm)
        self.saved_encoder = self.encoder if encoder_saved else None

    def load_data(self) -> None:
        """The samples, their cached features and teacher tokens, and captions written by the encoder's own head."""
        config, started = self.config, time.perf_counter()
        samples = gather_samples(config.data.train, "train")
        val_samples = gather_samples(config.data.val, "val")
        if not samples:
            raise ValueError("the training data is empty")
        with self.accelerator.main_process_first():  # the others then read the cache the main process filled
            self.features, self.rows, self.teacher = cached_features(
                self.encoder, self.teacher_encoder, self.adapter, samples + val_samples, self.precision,
                self.progress)
        head, head_features, head_rows = captioning_head(samples + val_samples, self.encoder, self.features,
                                                         self.rows, cache_precision(self.precision), self.progress)
        self.samples = write_head_captions(samples, head_features, head_rows, head, config.train.seed)
        self.val_samples = write_head_captions(val_samples, head_features, head_rows, head, config.train.seed)
        self.feature_seconds = time.perf_counter() - started

    def prepare_optimisation(self) -> None:
        """Parameter groups, optimizer, seeded epoch order, schedule, accelerate's wrapping and the resume point."""
        config, parts = self.config, self.parts
        groups = self._parameter_groups()
        self.trainable = [p for group in groups for p in group["params"]]
        optimizer = torch.optim.AdamW(groups, weight_decay=config.train.weight_decay)
        self.order = EpochOrder(len(self.samples), config.train.seed)
        self.data_order = hashlib.sha1("\n".join(self.samples[i].image_id + self.samples[i].target
                                                 for i in self.order).encode()).hexdigest()
        # its own generator: an iterator started mid-epoch on resume must not draw from the global RNG (dropout's)
        loader = DataLoader(Positions(len(self.samples)), batch_size=config.train.batch_size, sampler=self.order,
                            collate_fn=torch.tensor, generator=torch.Generator().manual_seed(config.train.seed))
        updates_per_epoch = max(1, len(loader) // config.train.grad_accum)
        self.total_updates = config.train.max_steps or updates_per_epoch * config.train.epochs
        scheduler = warmup_cosine(optimizer, min(config.train.warmup_steps, self.total_updates // 10),
                                  self.total_updates)
        save_trainable_only(self.accelerator)
        modules = [parts.adapter, *parts.extra_trainable] + ([self.encoder] if self.encoder_trains else [])
        prepared = self.accelerator.prepare(*modules, optimizer, loader, scheduler)
        self.models, (self.optimizer, self.loader, self.scheduler) = list(prepared[:-3]), prepared[-3:]
        parts.adapter = self.models[0]
        if parts.llm is not None:
            parts.llm = self.models[1]
        if self.encoder_trains:
            self.encoder = self.models[-1]
        if self.main:
            self.accelerator.init_trackers(config.name, {"stage": self.stage, "batch_size": config.train.batch_size,
                                                         "lr": config.train.lr})
        self.live = LiveFeatures(self.encoder) if self.encoder_trains else None
        if self.latest is not None:
            state = restore(self.accelerator, self.latest, parts, self.optimizer, self.scheduler, config)
            self.step, self.epoch, self.batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
            log.info("resumed from %s (step %d, epoch %d, batch %d)", self.latest, self.step, self.epoch,
                     self.batch_in_epoch)
        self.first_step = self.step
        self.metrics = MetricsLog(self.output, resumed_step=self.step if self.latest is not None else None) \
            if self.main else None

    def _parameter_groups(self) -> list[dict]:
        def trainable_of(*modules: torch.nn.Module) -> list[torch.nn.Parameter]:
            return [p for module in modules for p in module.parameters() if p.requires_grad]

        config, parts = self.config, self.parts
        if parts.llm_lr is None:  # one group, as checkpoints before lora_lr were saved
            groups = [{"params": trainable_of(self.adapter, *parts.extra_trainable), "lr": config.train.lr}]
        else:
            groups = [{"params": trainable_of(self.adapter), "lr": config.train.lr},
                      {"params": trainable_of(*parts.extra_trainable), "lr": parts.llm_lr}]
        if self.encoder_trains:
            set_training(self.encoder)
            groups.append({"params": trainable_of(self.encoder), "lr": self.config.model.encoder_lr})
        return groups

    def features_of(self, chosen: list[Sample]) -> EncoderOutput:
        if self.live is not None:
            return self.live(chosen, self.device)
        return gathered(self.features, self.rows, chosen, self.device)

    def teacher_of(self, chosen: list[Sample]) -> torch.Tensor | None:
        return None if self.teacher is None else gathered(self.teacher, self.rows, chosen, self.device)

    def validate(self) -> None:
        loss = validation_loss(self.parts, self.val_samples, self.features_of, self.teacher_of,
                               self.config.eval.batch_size, self.accelerator, self.models,
                               self.encoder if self.encoder_trains else None)
        if self.main:
            self.metrics.write_extra({"step": self.step, "epoch": self.epoch, "val_loss": loss,
                                      "val_samples": len(self.val_samples)})

    def snapshot(self, done_epochs: int | None) -> None:
        if self.config.train.snapshots and self.main:
            save_adapter_folder(self.output / SNAPSHOTS / snapshot_name(self.step, done_epochs), self.accelerator,
                                self.parts, self.saved_encoder)

    def train(self) -> None:
        """Optimizer steps until the run's total, epoch after epoch (resumed mid-epoch where it stopped)."""
        for model in self.models:
            model.train()
        if self.encoder_trains:
            set_training(self.accelerator.unwrap_model(self.encoder))
        if self.step == 0:
            if self.val_samples:
                self.validate()
            self.snapshot(None)
        self.window: list[float] = []
        self.seen_since_log, self.log_clock = 0, time.perf_counter()
        self.run_clock = self.log_clock
        bar = tqdm(total=self.total_updates, initial=self.step, desc=f"{self.stage} {self.config.name}", unit="step",
                   disable=not self.progress)
        while self.step < self.total_updates:
            self.order.epoch = self.epoch
            skip = self.batch_in_epoch
            for positions in self.accelerator.skip_first_batches(self.loader, skip) if skip else self.loader:
                self.batch_in_epoch += 1
                if not self._update([self.samples[i] for i in positions.tolist()]):
                    continue
                bar.update(1)
                bar.set_postfix(loss=f"{self.window[-1]:.3f}")
                self._after_update()
                if self.step >= self.total_updates:
                    break
            else:
                self.epoch, self.batch_in_epoch = self.epoch + 1, 0
        bar.close()

    def _update(self, chosen: list[Sample]) -> bool:
        """One micro-batch forward and backward; True when it completed an optimizer step."""
        accelerator = self.accelerator
        with accelerator.accumulate(*self.models):
            with accelerator.autocast():
                loss = self.parts.loss(Batch(self.features_of(chosen), chosen, self.teacher_of(chosen)))
            accelerator.backward(loss)
            if accelerator.sync_gradients:
                accelerator.clip_grad_norm_(self.trainable, 1.0)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad()
        self.window.append(accelerator.reduce(loss.detach().float(), "mean").item())
        self.seen_since_log += len(chosen) * accelerator.num_processes
        if not accelerator.sync_gradients:
            return False
        self.step += 1
        return True

    def _after_update(self) -> None:
        """Metrics every log_every steps, validation, epoch snapshots and checkpoints every save_every steps."""
        config, step = self.config.train, self.step
        if step % config.log_every == 0 or step == self.total_updates:
            self._log_metrics()
        epoch_done = self.batch_in_epoch == len(self.loader)
        if self.val_samples and (step % config.val_every == 0 if config.val_every else epoch_done):
            self.validate()
        if epoch_done:
            self.snapshot(self.epoch + 1)
        if step % config.save_every == 0 or step == self.total_updates:
            checkpoint(self.accelerator, self.checkpoints, step, {
                "step": step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
                "micro_batches": self.accelerator.step, "batch_size": config.batch_size,
                "grad_accum": config.grad_accum, "processes": self.accelerator.num_processes})

    def _log_metrics(self) -> None:
        now = time.perf_counter()
        record = {"step": self.step, "epoch": self.epoch, "loss": sum(self.window) / len(self.window),
                  "lr": self.scheduler.get_last_lr()[0], "samples_per_s": self.seen_since_log / (now - self.log_clock),
                  "elapsed_s": now - self.run_clock}
        if self.encoder_trains:
            record["encoder_lr"] = self.scheduler.get_last_lr()[1]
        if self.main:
            self.metrics.write(record)
        self.accelerator.log({k: v for k, v in record.items() if k != "step"}, step=self.step)
        self.window, self.seen_since_log, self.log_clock = [], 0, now

    def finish(self) -> Path:
        """Save the final adapter and the run's summary; returns the adapter's folder."""
        accelerator, config = self.accelerator, self.config
        accelerator.wait_for_everyone()
        final = self.output / "adapter"
        if self.main:
            save_adapter_folder(final, accelerator, self.parts, self.saved_encoder)
            summary = {
                "stage": self.stage, "steps": self.step, "batch_size": config.train.batch_size,
                "samples": len(self.samples), "images": len({s.image_id for s in self.samples}),
                "train_seconds": time.perf_counter() - self.run_clock, "feature_seconds": self.feature_seconds,
                "trainable_parameters": sum(p.numel() for p in self.trainable), "device": str(self.device),
                "precision": self.precision, "processes": accelerator.num_processes,
                "grad_accum": config.train.grad_accum, "resumed_from": self.latest.name if self.latest else None,
                "steps_this_run": self.step - self.first_step, "encoder_mode": config.model.encoder_mode,
                "validation_samples": len(self.val_samples), "data_order": self.data_order}
            write_atomic(self.output / "summary.json", json.dumps(summary, indent=2))
            log.info("saved %s (%s)", final, summary)
        accelerator.end_training()
        return final
