"""Files a training run writes: fsynced atomic folders, checkpoints with a `latest` pointer, metrics logs, RNG state."""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors.torch import load_model
from torch import nn

LOOP_STATE = "loop_state.json"  # step, epoch and batch position; the rest of a checkpoint is accelerate's save_state
LEGACY_STATE = "training_state.pt"  # checkpoints written before the loop moved to accelerate's save_state


class ResumeError(ValueError):
    """`--resume` cannot continue this run; the message says why and what to do."""


def fsync_tree(folder: Path) -> None:
    """Flush every file under `folder`, and the folders themselves, to disk."""
    for path in sorted(folder.rglob("*"), reverse=True) + [folder]:
        flags = os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0)
        handle = os.open(path, flags)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)


def fsync_dir(folder: Path) -> None:
    handle = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def replace_folder(staging: Path, target: Path) -> None:
    """Move a finished, fsynced `staging` folder to `target`, replacing what was there by renames only."""
    if target.exists():
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
        os.replace(staging, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, target)
    fsync_dir(target.parent)


@contextmanager
def atomic_folder(target: Path) -> Iterator[Path]:
    """Yields an empty staging folder beside `target`; when the block ends without error its files are fsynced and
    it replaces `target`. A crash leaves the previous `target` (or none), never a half-written one."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
        fsync_tree(staging)
        replace_folder(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_atomic(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    with temporary.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


class Checkpoints:
    """checkpoint-<step>/ folders filled in a staging folder, fsynced, then renamed; `latest` names the newest."""

    def __init__(self, folder: Path, keep: int) -> None:
        self.folder, self.keep = folder, keep

    def latest(self) -> Path | None:
        pointer = self.folder / "latest"
        if not pointer.is_file():
            return None
        path = self.folder / pointer.read_text().strip()
        return path if path.is_dir() else None

    def resume_point(self) -> Path:
        """The checkpoint `--resume` continues from, or a ResumeError saying why there is none."""
        pointer = self.folder / "latest"
        if not pointer.is_file():
            raise ResumeError(f"--resume: {self.folder} holds no checkpoint (no 'latest' file), so there is nothing "
                              "to continue; run without --resume to start anew (earlier metrics would be replaced)")
        latest = self.latest()
        if latest is None:
            raise ResumeError(f"--resume: {pointer} names '{pointer.read_text().strip()}', which does not exist; "
                              "restore it or point 'latest' at a checkpoint folder that exists")
        if not (latest / LOOP_STATE).is_file() and not (latest / LEGACY_STATE).is_file():
            raise ResumeError(f"--resume: {latest} has neither {LOOP_STATE} nor {LEGACY_STATE}; it is not a "
                              "training checkpoint")
        return latest

    def staging(self, step: int) -> Path:
        return self.folder / f".staging-{step:07d}"

    def start(self, step: int) -> Path:
        staging = self.staging(step)
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        return staging

    def commit(self, step: int, loop_state: dict) -> Path:
        """Finish the staging folder of `step` (main process only, once every process has written into it)."""
        staging, target = self.staging(step), self.folder / f"checkpoint-{step:07d}"
        (staging / LOOP_STATE).write_text(json.dumps(loop_state))
        fsync_tree(staging)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
        write_atomic(self.folder / "latest", target.name)
        fsync_dir(self.folder)
        for old in sorted(self.folder.glob("checkpoint-*"))[:-self.keep] + sorted(self.folder.glob(".staging-*")):
            shutil.rmtree(old, ignore_errors=True)  # older checkpoints, and staging left by a killed run
        return target


def legacy_rng_state() -> dict:
    """The RNG state as checkpoints before accelerate's save_state stored it (kept for reading them)."""
    state = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]),
             "python_version": random.getstate()[0], "python_gauss": random.getstate()[2]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_legacy_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((state["python_version"], tuple(state["python"]), state["python_gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_legacy_checkpoint(folder: Path, modules: list[nn.Module], optimizer, scheduler) -> dict:
    """Restore a checkpoint in the format before accelerate's save_state (adapter.safetensors, extra<i>.pt with the
    LoRA weights, training_state.pt); tensors and primitives only (weights_only). Returns the loop position."""
    adapter, *extra = modules
    load_model(adapter, str(folder / "adapter.safetensors"))
    for index, module in enumerate(extra):
        module.load_state_dict(torch.load(folder / f"extra{index}.pt", weights_only=True), strict=False)
    state = torch.load(folder / LEGACY_STATE, weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    set_legacy_rng_state(state["rng"])
    return {"step": state["step"], "epoch": state["epoch"], "batch_in_epoch": state["batch_in_epoch"]}


class MetricsLog:
    """metrics.jsonl and metrics.csv (the card's loss curve reads the CSV); main process only.

    A resumed run first drops the rows logged after its checkpoint, which the resumed steps log again.
    """

    def __init__(self, folder: Path, resumed_step: int | None) -> None:
        self.jsonl, self.csv = folder / "metrics.jsonl", folder / "metrics.csv"
        if resumed_step is None:
            self.jsonl.unlink(missing_ok=True)
            self.csv.unlink(missing_ok=True)
        else:
            self._truncate(resumed_step)

    def _truncate(self, step: int) -> None:
        if self.jsonl.is_file():
            rows = [line for line in self.jsonl.read_text().splitlines() if line.strip()]
            kept = [line for line in rows if json.loads(line).get("step", 0) <= step]
            write_atomic(self.jsonl, "".join(line + "\n" for line in kept))
        if self.csv.is_file():
            with self.csv.open(newline="") as handle:
                reader = csv.DictReader(handle)
                fieldnames, rows = reader.fieldnames, list(reader)
            kept = [row for row in rows if int(row["step"]) <= step]
            self.csv.unlink()
            if kept and fieldnames:
                with self.csv.open("w", newline="") as handle:
                    writer = csv.DictWriter(handle, fieldnames=fieldnames)
                    writer.writeheader()
                    writer.writerows(kept)

    def write_extra(self, record: dict) -> None:
        """A row of other fields (validation loss) into metrics.jsonl only: the CSV keeps the training columns."""
        with self.jsonl.open("a") as handle:
            handle.write(json.dumps(record) + "\n")

    def write(self, record: dict) -> None:
        with self.jsonl.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        new = not self.csv.exists()
        with self.csv.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(record))
            if new:
                writer.writeheader()
            writer.writerow(record)
