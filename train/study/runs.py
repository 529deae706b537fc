"""What the study's claims share: their runs through the sweep (an arm and seed trained once, whichever claim asks
first), the analyses and evaluations of a run (computed once, kept in its folder), data overrides derived from the
budget, and the way figures and verdicts are written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from train.config import TrainConfig, load_config, toml_value
from train.study import Budget
from train.study.power import bootstrap_interval, item_rows, paired_seed_interval
from train.sweep import Arm, final_value, read_curve, run_sweep, steps_to_threshold


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
    """The run's analysis.json (computed once; again when it was made before the joint component counts)."""
    path = folder / "analysis.json"
    if not path.is_file() or "joint_components" not in json.loads(path.read_text()):  # made before the joint count
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


def equivalence(intervals: list[dict], margin: float) -> str:
    """Equivalence: reproduced when every interval lies inside +-margin; not reproduced when one lies wholly outside;
    otherwise inconclusive."""
    if any(iv["low"] is not None and (iv["low"] > margin or iv["high"] < -margin) for iv in intervals):
        return "not reproduced"
    if all(iv["low"] is not None and -margin <= iv["low"] and iv["high"] <= margin for iv in intervals):
        return "reproduced"
    return "inconclusive"


def superiority(iv: dict, smallest: float) -> str:
    """Superiority (or a direction): not reproduced when the interval lies wholly below the smallest effect of
    interest (an effect of the size that matters is ruled out, even if a smaller one is real); reproduced when it
    lies above 0; otherwise inconclusive."""
    if iv["high"] is not None and iv["high"] < smallest:
        return "not reproduced"
    if iv["low"] is not None and iv["low"] > 0:
        return "reproduced"
    return "inconclusive"


def reversed_(iv: dict) -> bool:
    """Whether an interval lies at or below 0 (a guard: the secondary figure must not go the other way)."""
    return iv["high"] is not None and iv["high"] <= 0


def paired_verdict(primary: dict, secondary: dict, smallest: float) -> str:
    """The primary interval's superiority verdict, except that it is inconclusive rather than reproduced when the
    secondary interval lies at or below 0."""
    first = superiority(primary, smallest)
    return "inconclusive" if first == "reproduced" and reversed_(secondary) else first


def combined(verdicts: list[str]) -> str:
    """reproduced if every part reproduced; not reproduced if any part did not; otherwise inconclusive."""
    if all(v == "reproduced" for v in verdicts):
        return "reproduced"
    return "not reproduced" if "not reproduced" in verdicts else "inconclusive"


def final_item_gap(first: list[Path], second: list[Path], split: str = "val") -> dict[str, Any]:
    """Hierarchical bootstrap of the mean per-item final validation (or training) loss, second - first, paired by
    seed and item (train.study.val_items.item_losses, computed once per run)."""
    from train.study.val_items import item_losses

    return bootstrap_interval([item_rows(item_losses(b, split), item_losses(a, split)) for a, b in zip(first, second)])


def convergence(first: list[Path], second: list[Path], key: str = "val_loss") -> dict[str, Any]:
    """Paired comparison of two arms' runs (seed by seed): final `key`, and steps until `key` reaches a threshold
    every run reaches (5% above the worst final value); a run that never reaches it counts one logging interval
    past its last step. Differences are second - first (positive: the first is lower or faster). The final gap's
    interval is over seeds and validation items (per-item losses of the final adapters; over seeds alone for runs
    that cannot be rebuilt); the steps' over seeds. Each interval names its method."""
    curves = [[read_curve(folder, key) for folder in folders] for folders in (first, second)]
    finals = [[final_value(folder, key) for folder in folders] for folders in (first, second)]
    threshold = 1.05 * max(finals[0] + finals[1])

    def steps(curve: tuple[list[int], list[float]]) -> float:
        reached = steps_to_threshold(*curve, threshold)  # never None: every final value is below the threshold
        return float(curve[0][-1] if reached is None else reached)

    reached = [[steps(curve) for curve in arm] for arm in curves]
    try:
        final_gap = final_item_gap(first, second)
    except FileNotFoundError:  # a run without its config.json: one number per seed
        final_gap = paired_seed_interval(finals[1], finals[0])
    return {"final": finals, "final_gap": final_gap, "threshold": threshold,
            "steps_to_threshold": reached, "steps_gap": paired_seed_interval(reached[1], reached[0])}
