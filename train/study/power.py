"""Uncertainty and power for the study (issue 32, step 3): a hierarchical percentile bootstrap over seeds and test
items together (paired when two arms share seeds and items), its fall-back over seeds alone for runs that kept one
number per seed, the seeds a pilot's spread implies for 80% power at the smallest effect of interest, and the count
of intervals a report gives (for the multiplicity note)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

LEVEL = 0.95
DRAWS = 4000
RESAMPLING_SEED = 32  # fixed: the same inputs give the same interval
HIERARCHICAL = "percentile bootstrap over seeds and test items (seeds resampled, then items within each seed), paired"
OVER_SEEDS = "percentile bootstrap over seeds only (one number per seed)"
ROUND_ONE_T = "Student-t interval over seeds (round 1; the bootstrap replaces it when the claim is re-run)"


def item_rows(*arms: Sequence[float]) -> np.ndarray:
    """One seed's per-item values of several arms, as rows (items) by columns (arms); the arms must score the same
    items in the same order (paired)."""
    if len({len(arm) for arm in arms}) != 1:
        raise ValueError(f"paired arms need the same items: {[len(arm) for arm in arms]}")
    return np.column_stack([np.asarray(arm, dtype=float) for arm in arms])


def difference(rows: np.ndarray) -> float:
    """The default statistic: mean over items of column 0 minus column 1 (or of column 0 alone)."""
    return float(np.mean(rows[:, 0] - rows[:, 1])) if rows.shape[1] > 1 else float(np.mean(rows[:, 0]))


def bootstrap_interval(per_seed: list[np.ndarray], statistic: Callable[[np.ndarray], float] = difference,
                       level: float = LEVEL, draws: int = DRAWS, seed: int = RESAMPLING_SEED) -> dict[str, Any]:
    """Mean over seeds of `statistic` (of one seed's item rows) with a hierarchical percentile interval: each draw
    resamples the seeds with replacement, then the item rows within each drawn seed, and averages the statistic over
    the drawn seeds (a seed whose resampled statistic is undefined, nan, is left out of that draw). Rows stay whole,
    so arms in columns stay paired by item. No interval from one seed (seed-to-seed spread is what the claims are
    about). `sd` is the spread of the per-seed statistics (the pilot's SD)."""
    values = [statistic(rows) for rows in per_seed]
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else None
    found = {"mean": mean, "low": None, "high": None, "sd": sd, "n": len(values), "level": level,
             "per_seed": values, "method": HIERARCHICAL}
    if len(per_seed) < 2:
        return found
    rng = np.random.default_rng(seed)
    estimates = np.empty(draws)
    for draw in range(draws):
        chosen = rng.integers(len(per_seed), size=len(per_seed))
        estimates[draw] = np.nanmean([statistic(per_seed[s][rng.integers(len(per_seed[s]), size=len(per_seed[s]))])
                                   for s in chosen])
    if np.all(np.isnan(estimates)):
        return found
    low, high = np.nanquantile(estimates, [(1 - level) / 2, (1 + level) / 2])
    return {**found, "low": float(low), "high": float(high)}


def seed_interval(values: Sequence[float], level: float = LEVEL, draws: int = DRAWS,
                  seed: int = RESAMPLING_SEED) -> dict[str, Any]:
    """Percentile bootstrap of the mean over seeds alone (for a figure recorded once per seed)."""
    rows = [np.asarray([[value]], dtype=float) for value in values]
    return {**bootstrap_interval(rows, difference, level, draws, seed), "method": OVER_SEEDS}


def paired_seed_interval(first: Sequence[float], second: Sequence[float], level: float = LEVEL) -> dict[str, Any]:
    """The seed bootstrap of the per-seed differences first - second (same seeds, in order)."""
    if len(first) != len(second):
        raise ValueError(f"paired values need the same seeds: {len(first)} vs {len(second)}")
    return seed_interval([a - b for a, b in zip(first, second)], level)


def _quantile(probability: float, freedom: float) -> float:
    from scipy.stats import norm, t

    return float(t.ppf(probability, freedom) if math.isfinite(freedom) else norm.ppf(probability))


def seeds_needed(sd: float | None, smallest: float, kind: str = "superiority", power: float = 0.8,
                 level: float = LEVEL) -> int | None:
    """Seeds for `power` to decide a claim at its smallest effect of interest from a pilot's per-seed SD (t quantiles,
    iterated to their own degrees of freedom). Superiority or direction: the two-sided `level` interval excludes 0
    when the true effect is `smallest`. Equivalence: both one-sided tests (TOST) reject when the true difference is 0
    and the margin is `smallest`. Non-inferiority: the interval's low end clears -`smallest` when the true difference
    is 0 (one side of the equivalence test). At least 2; None without a pilot SD."""
    if sd is None or not math.isfinite(sd) or smallest <= 0:
        return None
    if sd == 0:
        return 2
    alpha = 1 - level

    def wanted(freedom: float) -> float:
        if kind == "equivalence":
            z = _quantile(1 - alpha, freedom) + _quantile(1 - (1 - power) / 2, freedom)
        elif kind == "non-inferiority":
            z = _quantile(1 - alpha / 2, freedom) + _quantile(power, freedom)
        else:
            z = _quantile(1 - alpha / 2, freedom) + _quantile(power, freedom)
        return (z * sd / smallest) ** 2

    n = max(2, math.ceil(wanted(math.inf)))  # the normal approximation is a lower bound (t quantiles are larger)
    while n < wanted(n - 1) and n < 1_000_000:
        n += 1
    return n


def intervals_in(value: Any) -> list[dict[str, Any]]:
    """Every interval (a mapping with mean, low and high, low not None) inside a record's details or bars."""
    if isinstance(value, dict):
        if {"mean", "low", "high"} <= set(value) and value["low"] is not None:
            return [value]
        return [found for item in value.values() for found in intervals_in(item)]
    if isinstance(value, list):
        return [found for item in value for found in intervals_in(item)]
    return []
