"""Sweeps for the adapter study: arms (a recipe of stages) x seeds, where seed s gives every arm the same data order
(`train.seed` fixes the shuffle; summary.json records its digest), loss curves from metrics.jsonl, steps to a loss
threshold and paired confidence intervals over seeds. A finished run (summary.json present) is reused and one stopped
after a checkpoint is resumed, so a sweep that stopped part-way continues where it was."""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from train.config import load_config


@dataclass(frozen=True)
class Arm:
    """One recipe: stages run in order, each continuing from the previous stage's adapter. With `after`, the recipe
    continues another arm's runs (trained once, in that arm's folders) instead of starting from scratch."""

    name: str
    stages: list[tuple[str, list[str]]] = field(default_factory=list)  # (stage, overrides)
    after: Arm | None = None


def run_arm(arm: Arm, seed: int, root: Path, base: list[str]) -> list[Path]:
    """Run (or reuse) each stage of `arm` (after those of `arm.after`) with `train.seed=seed`; the run folders, in
    order, the earlier arm's first."""
    from train.loop import checkpoints_of, train_stage

    folders = run_arm(arm.after, seed, root, base) if arm.after is not None else []
    previous = folders[-1] if folders else None
    for index, (stage, extra) in enumerate(arm.stages, start=len(folders)):
        folder = Path(root) / arm.name / f"seed-{seed}" / f"{index}-{stage}"
        chained = [f'model.init_from="{previous / "adapter"}"'] if previous is not None else []
        if not (folder / "summary.json").is_file():
            overrides = [*base, *extra, *chained, f"train.seed={seed}", f'output_dir="{folder}"', f'name="{arm.name}"']
            config = load_config(None, overrides)
            stopped_after_a_checkpoint = checkpoints_of(config).latest() is not None
            train_stage(stage, config, resume=stopped_after_a_checkpoint, progress=False)
        folders.append(folder)
        previous = folder
    return folders


def run_sweep(arms: list[Arm], seeds: list[int], root: Path, base: list[str]) -> dict[str, dict[int, list[Path]]]:
    """Every arm at every seed: arm name -> seed -> run folders."""
    return {arm.name: {seed: run_arm(arm, seed, root, base) for seed in seeds} for arm in arms}


def read_curve(folder: Path, key: str = "loss") -> tuple[list[int], list[float]]:
    """(steps, values) of one column of a run's metrics.jsonl (`loss`, `val_loss`, ...)."""
    steps, values = [], []
    for line in (Path(folder) / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line) if line.strip() else {}
        if key in row:
            steps.append(int(row["step"]))
            values.append(float(row[key]))
    return steps, values


def final_value(folder: Path, key: str = "val_loss") -> float:
    """The last logged value of a column (the validation loss at the end of a run, by default)."""
    _, values = read_curve(folder, key)
    if not values:
        raise ValueError(f"{folder}: metrics.jsonl has no '{key}' (set data.val for validation losses)")
    return values[-1]


def steps_to_threshold(steps: list[int], values: list[float], threshold: float, window: int = 1) -> int | None:
    """The first step at which the mean of the last `window` values is at or below `threshold` (None: never)."""
    for index in range(window - 1, len(values)):
        if statistics.fmean(values[index - window + 1:index + 1]) <= threshold:
            return steps[index]
    return None


def t_quantile(level: float, freedom: int) -> float:
    from scipy.stats import t

    return float(t.ppf(0.5 + level / 2, freedom))


def interval(values: list[float], level: float = 0.95) -> dict[str, float | int | None]:
    """Mean and Student-t confidence interval of the mean (no interval from one value)."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return {"mean": mean, "low": None, "high": None, "sd": None, "n": len(values), "level": level}
    sd = statistics.stdev(values)
    half = t_quantile(level, len(values) - 1) * sd / math.sqrt(len(values))
    return {"mean": mean, "low": mean - half, "high": mean + half, "sd": sd, "n": len(values), "level": level}


def paired_interval(first: list[float], second: list[float], level: float = 0.95) -> dict[str, float | int | None]:
    """Interval of the mean per-seed difference first - second (the two lists hold the same seeds in order)."""
    if len(first) != len(second):
        raise ValueError(f"paired values need the same seeds: {len(first)} vs {len(second)}")
    return interval([a - b for a, b in zip(first, second)], level)


def mean_curve(folders: list[Path], key: str = "loss") -> tuple[list[int], list[float]]:
    """The per-step mean of one column over runs that logged the same steps (seeds of one arm)."""
    curves = [read_curve(folder, key) for folder in folders]
    steps = curves[0][0]
    if any(c[0] != steps for c in curves):
        raise ValueError("the runs logged different steps; compare them one by one")
    return steps, [statistics.fmean(c[1][i] for c in curves) for i in range(len(steps))]
