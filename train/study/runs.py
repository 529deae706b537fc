"""What the study's claims share: their runs through the sweep (an arm and seed trained once, whichever claim asks
first), the analyses and evaluations of a run (computed once, kept in its folder), data overrides derived from the
budget, and the way figures and verdicts are written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from train.config import TrainConfig, load_config
from train.study import Budget
from train.sweep import Arm, final_value, paired_interval, read_curve, run_sweep, steps_to_threshold


def seed_runs(arms: list[Arm], budget: Budget) -> dict[str, list[list[Path]]]:
    """Arm name -> each seed's run folders (every stage, in order), in seed order (trained now or reused)."""
    sweep = run_sweep(arms, budget.seeds, budget.root / "runs", budget.base)
    return {name: [folders for _, folders in sorted(by_seed.items())] for name, by_seed in sweep.items()}


def final_runs(arms: list[Arm], budget: Budget) -> dict[str, list[Path]]:
    """Arm name -> the last stage's folder of each seed, in seed order (trained now or reused)."""
    return {name: [folders[-1] for folders in runs] for name, runs in seed_runs(arms, budget).items()}


def run_config(folder: Path, budget: Budget, *extra: str) -> TrainConfig:
    return load_config(None, [*budget.base, f'output_dir="{folder}"', *extra])


def analysis_of(folder: Path, budget: Budget) -> dict:
    """The run's analysis.json (computed once)."""
    if not (folder / "analysis.json").is_file():
        from train.analyse import analyse

        analyse(run_config(folder, budget))
    return json.loads((folder / "analysis.json").read_text())


def eval_of(folder: Path, budget: Budget, image_tokens: str = "real", *extra: str) -> dict:
    """The run's evaluation with these image tokens (computed once; `extra` overrides, such as the evaluation data,
    must be the same on every call for one folder)."""
    from train.evaluate import evaluate, results_name

    config = run_config(folder, budget, f'eval.image_tokens="{image_tokens}"', *extra)
    path = folder / f"{results_name(config)}.json"
    return json.loads(path.read_text()) if path.is_file() else evaluate(config, progress=False)


def toml_value(value: Any) -> str:
    """A value as a TOML inline literal (strings, numbers, booleans, lists and tables)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{key}={toml_value(item)}" for key, item in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(toml_value(item) for item in value) + "]"
    return repr(value)


def data_override(budget: Budget, split: str, **changes: Any) -> str:
    """`data.<split>=[...]`: the budget's entries for that split with `changes` applied to each (sizes stay the
    budget's, so one arm definition serves the tiny and the full budget)."""
    entries = getattr(load_config(None, budget.base).data, split)
    return f"data.{split}={toml_value([{**entry, **changes} for entry in entries])}"


def show(iv: dict, digits: int = 3, signed: bool = True) -> str:
    """`mean [low, high]` (signed for differences)."""
    form = f"{'+' if signed else ''}.{digits}f"
    if iv["low"] is None:
        return f"{iv['mean']:{form}} (one seed: no interval)"
    return f"{iv['mean']:{form}} [{iv['low']:{form}}, {iv['high']:{form}}]"


def equivalence(intervals: list[dict], tolerance: float) -> str:
    """reproduced: every interval inside +-tolerance; not reproduced: one lies wholly outside; else inconclusive."""
    if any(iv["low"] is not None and (iv["low"] > tolerance or iv["high"] < -tolerance) for iv in intervals):
        return "not reproduced"
    if all(iv["low"] is not None and -tolerance <= iv["low"] and iv["high"] <= tolerance for iv in intervals):
        return "reproduced"
    return "inconclusive"


def direction(iv: dict, margin: float = 0.0) -> str:
    """reproduced: the interval lies above `margin`; not reproduced: it lies at or below 0; else inconclusive."""
    if iv["low"] is not None and iv["low"] > margin:
        return "reproduced"
    if iv["high"] is not None and iv["high"] <= 0:
        return "not reproduced"
    return "inconclusive"


def paired_verdict(primary: dict, secondary: dict) -> str:
    """reproduced: the primary interval lies above 0 and the secondary one does not lie at or below 0; not
    reproduced: the primary interval lies at or below 0; otherwise inconclusive."""
    first = direction(primary)
    if first == "reproduced" and direction(secondary) != "not reproduced":
        return "reproduced"
    return "not reproduced" if first == "not reproduced" else "inconclusive"


def combined(verdicts: list[str]) -> str:
    """reproduced if every part reproduced; not reproduced if any part did not; otherwise inconclusive."""
    if all(v == "reproduced" for v in verdicts):
        return "reproduced"
    return "not reproduced" if "not reproduced" in verdicts else "inconclusive"


def convergence(first: list[Path], second: list[Path], key: str = "val_loss") -> dict[str, Any]:
    """Paired comparison of two arms' runs (seed by seed): final `key`, and steps until `key` reaches a threshold
    every run reaches (5% above the worst final value); a run that never reaches it counts one logging interval
    past its last step. Differences are second - first (positive: the first is lower or faster)."""
    curves = [[read_curve(folder, key) for folder in folders] for folders in (first, second)]
    finals = [[final_value(folder, key) for folder in folders] for folders in (first, second)]
    threshold = 1.05 * max(finals[0] + finals[1])

    def steps(curve: tuple[list[int], list[float]]) -> float:
        reached = steps_to_threshold(*curve, threshold)  # never None: every final value is below the threshold
        return float(curve[0][-1] if reached is None else reached)

    reached = [[steps(curve) for curve in arm] for arm in curves]
    return {"final": finals, "final_gap": paired_interval(finals[1], finals[0]), "threshold": threshold,
            "steps_to_threshold": reached, "steps_gap": paired_interval(reached[1], reached[0])}
