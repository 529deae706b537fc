"""The adapter study (issue 14): each seed paper's claims as registered experiments, keyed by claim id. A claim runs
at a budget (`tiny` for tests, `full` for findings) and returns our figure with its interval and a verdict."""

from __future__ import annotations

import re
import resource
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

UNTESTABLE = "not testable at this scale"
VERDICTS = ("reproduced", "not reproduced", "inconclusive", UNTESTABLE)
KINDS = ("superiority", "direction", "equivalence", "non-inferiority")
ROUND_ONE = {"held": "reproduced", "did not hold": "not reproduced"}  # the first round's names for the same rules


@dataclass
class Budget:
    """What every run of a claim starts from: the overrides (LLM, data, steps), the seeds and the runs' folder."""

    name: str  # "tiny" (tests; numbers mean nothing), "full", or "full-x4" (the scale ladder: 4x steps and data)
    root: Path
    seeds: list[int]
    base: list[str]
    scale: int = 1

    def command(self, claim: str) -> str:
        return (f"python -m train study {claim} --seeds {len(self.seeds)}" + (" --tiny" if self.name == "tiny" else "")
                + (f" --scale {self.scale}" if self.scale > 1 else ""))


@dataclass
class Finding:
    """Our figure for one claim: a value with its interval, the verdict, and what backs it."""

    figure: str  # one line, e.g. "k=5 - k=1 loss: +0.012 [-0.03, +0.05] (3 seeds)"
    value: float | None
    low: float | None
    high: float | None
    verdict: str = "inconclusive"  # replaced by the claim's judge (run_claim)
    rule: str = ""  # replaced by the claim's rule text (run_claim)
    details: dict[str, Any] = field(default_factory=dict)
    curves: dict[str, tuple[list[int], list[float]]] = field(default_factory=dict)  # plotted when present
    bars: dict[str, dict[str, float | dict]] = field(default_factory=dict)  # series -> category -> value or
    # interval (mean, low, high); plotted when present
    interval_method: str = ""  # how the intervals were made (train.study.power's HIERARCHICAL or OVER_SEEDS)

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, not {self.verdict!r}")


@dataclass(frozen=True)
class Claim:
    id: str
    seed: str  # the seed paper's file under shared/seeds/
    section: str
    statement: str
    paper_figure: str
    run: Callable[[Budget], Finding]
    deviations: tuple[str, ...] = ()  # how the test here differs from the paper's setup, one line each
    broken_premise: str = ""  # set when a deviation breaks what the claim rests on: then it is not testable here
    # unless the finding's details say `premise_restored` (a matched arm restores it)
    variant_of: str = ""  # the claim this one tests again in another way (counted once)
    kind: str = "superiority"  # superiority | direction (a sign the paper gives without a size) | equivalence
    smallest_effect: float = 0.0  # in the figure's unit, set before any run; for equivalence, the margin
    unit: str = ""  # the figure's unit, e.g. "nats", "CIDEr"
    effect_why: str = ""  # one line: why that size
    rule: str = ""  # how the verdict follows from the intervals (the symmetric rules of train.study.runs)
    judge: Callable[[dict[str, Any]], str] | None = None  # details -> verdict (a re-label re-judges old records)
    judged: Callable[[dict[str, Any]], list[dict]] | None = None  # details -> the intervals the verdict reads

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"claim '{self.id}': kind must be one of {KINDS}, not {self.kind!r}")


CLAIMS: dict[str, Claim] = {}


def register(claim: Claim) -> Claim:
    if claim.id in CLAIMS:
        raise ValueError(f"claim '{claim.id}' is registered twice")
    CLAIMS[claim.id] = claim
    return claim


def cpu_seconds() -> float:
    """CPU time used so far by this process (all its threads) and its finished children."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run_claim(claim_id: str, budget: Budget) -> dict[str, Any]:
    """Run one registered claim; its record for findings.json (the claim, our finding, CPU minutes, command)."""
    if claim_id not in CLAIMS:
        raise ValueError(f"unknown claim '{claim_id}'; known: {', '.join(CLAIMS)}")
    claim = CLAIMS[claim_id]
    start = cpu_seconds()
    finding = claim.run(budget)
    return labelled({
        "id": claim.id, "seed": claim.seed, "section": claim.section, "statement": claim.statement,
        "paper_figure": claim.paper_figure, "figure": finding.figure, "value": finding.value, "low": finding.low,
        "high": finding.high, "verdict": finding.verdict, "rule": finding.rule, "details": finding.details,
        "curves": finding.curves, "bars": finding.bars, "budget": budget.name, "seeds": list(budget.seeds),
        "cpu_minutes": (cpu_seconds() - start) / 60, "command": budget.command(claim.id),
        "interval_method": finding.interval_method})


def labelled(record: dict[str, Any]) -> dict[str, Any]:
    """A record under the current labels, rules and registry: its rule's verdict is re-judged from its details by the
    claim's symmetric rule and kept as `rule_verdict` (first-round names mapped for claims without a judge); a claim
    whose premise is broken here is not testable at this scale whatever the rule said, unless its finding ran a
    matched arm that restores the premise (details' `premise_restored`, set by the claim). Adds the claim's kind,
    smallest effect of interest, the interval method (round-1 records: t intervals) and the pilot's seed count."""
    from train.study.power import ROUND_ONE_T

    claim = CLAIMS.get(record["id"])
    rule_verdict = record.get("rule_verdict", record["verdict"])
    rule_verdict = ROUND_ONE.get(rule_verdict, rule_verdict)
    rule = re.sub(r"(?<![\w-])held(?![\w-])", "reproduced", record["rule"].replace("did not hold", "not reproduced"))
    if claim is not None and claim.judge is not None:
        rule_verdict, rule = claim.judge(record["details"]), claim.rule
    deviations = list(claim.deviations) if claim else record.get("deviations", [])
    premise = claim.broken_premise if claim else record.get("broken_premise", "")
    variant_of = claim.variant_of if claim else record.get("variant_of", "")
    keys = ("kind", "smallest_effect", "unit", "effect_why")
    registry = {key: getattr(claim, key) for key in keys} if claim else {key: record.get(key) for key in keys}
    untestable = bool(premise) and not record["details"].get("premise_restored")
    return {**record, **registry, "rule": rule, "rule_verdict": rule_verdict,
            "verdict": UNTESTABLE if untestable else rule_verdict, "deviations": deviations, "broken_premise": premise,
            "variant_of": variant_of, "interval_method": record.get("interval_method") or ROUND_ONE_T,
            **pilot_plan(record, claim)}


def pilot_plan(record: dict[str, Any], claim: Claim | None) -> dict[str, Any]:
    """The pilot's SD and the seeds it implies for 80% power at the smallest effect of interest: the first record
    that carried them keeps them (round 1 is the pilot); otherwise the spread of the intervals the verdict reads (the
    largest, for claims judged on several). The seed count is worked out again from the pilot's SD each time, so it
    follows the registry's smallest effect."""
    if claim is None or claim.judged is None:
        return {key: record.get(key) for key in ("pilot_sd", "seeds_needed")}
    from train.study.power import seeds_needed

    if record.get("pilot_sd") is not None:
        return {"pilot_sd": record["pilot_sd"],
                "seeds_needed": seeds_needed(record["pilot_sd"], claim.smallest_effect, claim.kind)}
    plans = [(seeds_needed(iv.get("sd"), claim.smallest_effect, claim.kind), iv.get("sd"))
             for iv in claim.judged(record["details"])]
    plans = [plan for plan in plans if plan[0] is not None]
    if not plans:
        return {"pilot_sd": None, "seeds_needed": None}
    needed, sd = max(plans)
    return {"pilot_sd": sd, "seeds_needed": needed}
