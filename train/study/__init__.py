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
ROUND_ONE = {"held": "reproduced", "did not hold": "not reproduced"}  # the first round's names for the same rules


@dataclass
class Budget:
    """What every run of a claim starts from: the overrides (LLM, data, steps), the seeds and the runs' folder."""

    name: str  # "tiny" (tests; numbers mean nothing) or "full"
    root: Path
    seeds: list[int]
    base: list[str]

    def command(self, claim: str) -> str:
        return f"python -m train study {claim} --seeds {len(self.seeds)}" + (" --tiny" if self.name == "tiny" else "")


@dataclass
class Finding:
    """Our figure for one claim: a value with its interval, the verdict, and what backs it."""

    figure: str  # one line, e.g. "k=5 - k=1 loss: +0.012 [-0.03, +0.05] (3 seeds)"
    value: float | None
    low: float | None
    high: float | None
    verdict: str
    rule: str  # how the verdict follows from the figure
    details: dict[str, Any] = field(default_factory=dict)
    curves: dict[str, tuple[list[int], list[float]]] = field(default_factory=dict)  # plotted when present
    bars: dict[str, dict[str, float | dict]] = field(default_factory=dict)  # series -> category -> value or
    # interval (train.sweep.interval: mean, low, high); plotted when present

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
    variant_of: str = ""  # the claim this one tests again in another way (counted once)


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
        "cpu_minutes": (cpu_seconds() - start) / 60, "command": budget.command(claim.id)})


def labelled(record: dict[str, Any]) -> dict[str, Any]:
    """A record under the current labels and the registry's deviations: its rule's verdict is kept as
    `rule_verdict` (first-round names mapped), and a claim whose premise is broken here is not testable at this
    scale whatever the rule said."""
    claim = CLAIMS.get(record["id"])
    rule_verdict = record.get("rule_verdict", record["verdict"])
    rule_verdict = ROUND_ONE.get(rule_verdict, rule_verdict)
    deviations = list(claim.deviations) if claim else record.get("deviations", [])
    premise = claim.broken_premise if claim else record.get("broken_premise", "")
    variant_of = claim.variant_of if claim else record.get("variant_of", "")
    rule = re.sub(r"(?<![\w-])held(?![\w-])", "reproduced", record["rule"].replace("did not hold", "not reproduced"))
    return {**record, "rule": rule, "rule_verdict": rule_verdict, "verdict": UNTESTABLE if premise else rule_verdict,
            "deviations": deviations, "broken_premise": premise, "variant_of": variant_of}
