"""Helpers for the adapter-study tests: tiny-config overrides and a stage run against a private feature cache."""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors.torch import load_file

from train.config import load_config

TINYLM = ['model.adapter="tinylm"',
          "model.adapter_options={vocab_size=23,lm_width=32,lm_layers=1,lm_heads=4,num_latents=4}"]


def base_overrides(llm_dir: Path, *extra: str, count: int = 8) -> list[str]:
    """A tiny run's settings without its output folder (a sweep names one per arm and seed)."""
    return [f'model.llm="{llm_dir}"', f'data.train=[{{name="shapes",count={count}}}]',
            'data.eval=[{name="shapes",count=3,vqa_per_image=1}]', "train.batch_size=4", "train.max_steps=4",
            "train.save_every=100", "train.log_every=1", "train.warmup_steps=0", "eval.max_new_tokens=3", *extra]


def overrides(llm_dir: Path, output: Path, *extra: str, count: int = 8) -> list[str]:
    return [*base_overrides(llm_dir, *extra, count=count), f'output_dir="{output}"']


def run_stage(stage: str, arguments: list[str], cache: Path) -> Path:
    from train.loop import train_stage

    os.environ["VLM_DEMO_CACHE"] = str(cache)
    return train_stage(stage, load_config(None, arguments), progress=False)


def weights(folder: Path, name: str = "model.safetensors") -> dict[str, torch.Tensor]:
    return load_file(Path(folder) / name)


def metrics(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (Path(folder) / "metrics.jsonl").read_text().splitlines() if line.strip()]


@contextmanager
def tiny_study(root: Path, seeds: int = 2):
    """The study's --tiny budget with its runs and feature cache under `root` (the cache variable is restored after);
    budgets of one root share their runs (seed 0 of a one-seed budget is seed 0 of a two-seed one)."""
    from train.study.cli import budget

    saved = os.environ.get("VLM_DEMO_CACHE")
    os.environ["VLM_DEMO_CACHE"] = str(root / "cache")
    try:
        yield budget(True, root, seeds)
    finally:
        if saved is None:
            os.environ.pop("VLM_DEMO_CACHE", None)
        else:
            os.environ["VLM_DEMO_CACHE"] = saved


def numbers_in(text: str) -> list[float]:
    """Every decimal number written in a figure."""
    import re

    return [float(n) for n in re.findall(r"[-+]?\d+\.\d+", text)]
