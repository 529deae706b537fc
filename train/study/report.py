"""The study's outputs: findings.json (every claim's record), findings.md (a table and a section per claim) and a
plot per claim that has curves or bars. A run of some claims updates their records and keeps the others."""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path
from typing import Any

from train.run_files import write_atomic
from train.study import UNTESTABLE

LINE_STYLES = ["-", "--", "-.", ":"]  # curves that lie on top of each other stay apart
TINY_NOTE = ("These numbers come from the `--tiny` budget (a random 2-layer LLM, a few images and steps): they show "
             "that each experiment runs end to end and say nothing about the papers.")


REREPORT = 0.1  # a re-run costing under a tenth of the earlier one's CPU minutes only read finished runs


def merged(out: Path, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Earlier records from out/findings.json with these replacing theirs, in claim order of first appearance. A
    record re-made from the same budget and seeds in under REREPORT of the earlier CPU minutes re-reported finished
    runs and keeps the earlier minutes (re-reporting costs seconds, training does not); one that cost more trained
    arms of its own (a redesigned claim) and reports its own minutes."""
    path = Path(out) / "findings.json"
    earlier = json.loads(path.read_text())["claims"] if path.is_file() else []
    by_id = {record["id"]: record for record in earlier}
    for record in records:
        before = by_id.get(record["id"])
        if (before and (before["budget"], before["seeds"]) == (record["budget"], record["seeds"])
                and record["cpu_minutes"] < REREPORT * before["cpu_minutes"]):
            record = {**record, "cpu_minutes": before["cpu_minutes"]}
        if before and before.get("pilot_sd") is not None and before["budget"] == record["budget"]:
            record = {**record, "pilot_sd": before["pilot_sd"], "seeds_needed": before.get("seeds_needed")}
        by_id[record["id"]] = record
    return list(by_id.values())


def plot_finding(record: dict[str, Any], folder: Path) -> Path | None:
    """The claim's figure (matplotlib, PNG): a mean curve per arm (training loss over steps unless details name
    `curve_axes`), else grouped bars per series (details' `bar_axes` name the categories and the value); None when the
    claim has neither. The value axis is logarithmic when a curve's first value (or one bar) dwarfs the rest."""
    curves, bars, details = record.get("curves"), record.get("bars"), record.get("details", {})
    if not curves and not bars:
        return None
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot, ticker

    figure, axes = pyplot.subplots(figsize=(6, 3.5))
    if curves:
        for index, (name, (steps, values)) in enumerate(curves.items()):
            axes.plot(steps, values, LINE_STYLES[index % len(LINE_STYLES)], label=name)
        axes.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
        values = [v for _, ys in curves.values() for v in ys if v is not None]
        firsts = [ys[0] for _, ys in curves.values() if ys and ys[0] is not None]
        log = bool(values) and min(values) > 0 and max(firsts, default=0) > 3 * min(values)
        x_label, y_label = details.get("curve_axes", ("step", "training loss"))
        legend = {"fontsize": "small"}
    else:
        values = grouped_bars(axes, bars, details.get("bar_reference"))
        log = bool(values) and min(values) > 0 and max(values) > 20 * min(values)
        x_label, y_label = details.get("bar_axes", ("", "value"))
        legend = {"fontsize": "small", "loc": "upper center", "ncol": len(bars), "frameon": False}
    if log:
        axes.set_yscale("log")
        decades = math.log10(max(values) / min(values))
        subs = (1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 7.0) if decades < 1 else (1.0, 2.0, 5.0) if decades < 2 else (1.0,)
        axes.yaxis.set_major_locator(ticker.LogLocator(subs=subs))
        axes.yaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
        axes.yaxis.set_minor_formatter(ticker.NullFormatter())
    if bars and values:
        axes.set_ylim(top=max(values) * (4 if log else 1.25))  # room for the legend above the bars
    axes.set_xlabel(x_label)
    with_intervals = any(isinstance(v, dict) for series in (bars or {}).values() for v in series.values())
    spread = f"mean of {len(record['seeds'])} seeds{', 95% CI' if with_intervals else ''}"
    axes.set_ylabel(f"{y_label} ({spread})" if len(y_label + spread) < 40 else f"{y_label}\n({spread})")
    axes.set_title(record["id"])
    axes.legend(**legend)
    figure.tight_layout()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{record['id']}.png"
    figure.savefig(path, dpi=110)
    pyplot.close(figure)
    return path


def grouped_bars(axes: Any, bars: dict[str, dict[str, Any]], reference: str | None = None) -> list[float]:
    """One group of bars per category, one bar per series (a missing value leaves a gap; the `reference` series, a
    baseline, in grey). A value is a number or an interval (mean, low, high), drawn as the mean with an error bar
    that stops at the axis where the interval reaches 0 or below. Returns the heights and interval tops drawn."""
    categories = list(dict.fromkeys(category for series in bars.values() for category in series))
    width = 0.8 / len(bars)
    drawn, errors = [], []
    for index, (name, series) in enumerate(bars.items()):
        places = [i for i, category in enumerate(categories) if category in series]
        values = [series[categories[i]] for i in places]
        heights = [value["mean"] if isinstance(value, dict) else value for value in values]
        x = [i + (index - (len(bars) - 1) / 2) * width for i in places]
        axes.bar(x, heights, width, label=name, **({"color": "0.65"} if name == reference else {}))
        drawn += heights
        errors += [(place, value) for place, value in zip(x, values)
                   if isinstance(value, dict) and value.get("low") is not None]
    floor = min((h for h in drawn if h > 0), default=1.0) / 2
    for place, value in errors:
        low = max(value["low"], min(floor, value["mean"]))
        axes.errorbar(place, value["mean"], yerr=[[value["mean"] - low], [value["high"] - value["mean"]]],
                      fmt="none", ecolor="black", elinewidth=1, capsize=2)
    axes.set_xticks(range(len(categories)), [textwrap.fill(category, 18) for category in categories])
    return drawn + [value["high"] for _, value in errors]


def markdown(records: list[dict[str, Any]], plots: dict[str, str]) -> str:
    lines = ["# Findings: the seed papers' claims, re-run here", "",
             "Written by `python -m train study`; each claim's exact command is in its row. Four labels: "
             "**reproduced** and **not reproduced** follow the rule under each claim, **inconclusive** when its "
             "intervals decide neither, and **not testable at this scale** when a deviation from the paper's setup "
             "(listed under each claim) breaks what the claim rests on, whatever the rule says. A result that "
             "contradicts a paper is a finding, not a failure. CPU minutes are what "
             "the claim itself spent: runs it shares with a claim before it (same arm and seed) are counted there. The "
             "families trained on one recipe and shipped are compared in [families.md](families.md).", "",
             "Budget `full`: a run trains 300 steps of batch 8 on 400 shapes training images (lr 1e-3; an LLM, if any, "
             "frozen), validates on 40 and is evaluated on 50 held-out images; claims add their stages, questions and "
             "options (`train/study/cli.py`, `train/study/arms.py`). Seed s gives every arm the same data order and "
             "the same test items, so intervals are paired. Seed papers: `../shared/seeds/` (TerraAlign is "
             "terraalign-thesis.txt, single-FC single-fc-layer-adapter.txt).", "", *RULES_NOTE, "",
             multiplicity(records), ""]
    if any(record["budget"] == "tiny" for record in records):
        lines += [f"> {TINY_NOTE}", ""]
    lines += ["| claim | seed, section | paper | ours | verdict | smallest effect | seeds: run / pilot-implied | "
              "budget | CPU min | command |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in records:
        cells = [r["id"], f"{r['seed']}, {r['section']}", r["paper_figure"], r["figure"], f"**{r['verdict']}**",
                 f"{r.get('kind') or '?'}, {effect(r)}", f"{len(r['seeds'])} / {r.get('seeds_needed') or '?'}",
                 f"{r['budget']}, seeds {r['seeds']}", f"{r['cpu_minutes']:.1f}", f"`{r['command']}`"]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    for r in records:
        lines += ["", f"## {r['id']}: {r['statement']}", "", f"- Paper ({r['seed']}, {r['section']}): "
                  f"{r['paper_figure']}", f"- Ours: {r['figure']}", *verdict_lines(r), *power_lines(r),
                  f"- Budget: {r['budget']}, seeds {r['seeds']}, {r['cpu_minutes']:.1f} CPU minutes; `{r['command']}`"]
        if r["id"] in plots:
            lines += ["", f"![{r['id']}]({plots[r['id']]})"]
    return "\n".join(lines) + "\n"


def verdict_lines(record: dict[str, Any]) -> list[str]:
    """The verdict with its rule, why a claim is not testable here, and its deviations from the paper."""
    rule_verdict = record.get("rule_verdict", record["verdict"])
    lines = [f"- Verdict: **{record['verdict']}**. Rule: {record['rule']}"]
    if record.get("broken_premise") and record["verdict"] == UNTESTABLE:
        lines[0] += f" (the rule alone says: {rule_verdict})"
        lines.append(f"- Not testable here: {record['broken_premise']}.")
    elif record.get("broken_premise"):
        lines.append(f"- The premise the first setup broke ({record['broken_premise']}) is restored by a matched arm.")
    if record.get("deviations"):
        lines.append("- Deviations from the paper's setup:")
        lines += [f"  - {deviation}" for deviation in record["deviations"]]
    return lines


RULES_NOTE = (
    "Each claim states in the registry, before it runs, whether it is a superiority claim (the paper says one arm is "
    "better, by a size), a direction claim (a sign without a size), an equivalence or a non-inferiority claim, and "
    "its smallest effect of interest in the figure's unit (for equivalence and non-inferiority, the margin). The "
    "rules are symmetric: a superiority or direction claim is reproduced when its interval lies above 0 and not "
    "reproduced when it lies wholly below the smallest effect of interest (an effect of the size that matters is "
    "ruled out, even where a smaller one is real); an equivalence claim is reproduced when its interval lies inside "
    "+-margin and not reproduced when it lies wholly outside; a non-inferiority claim (no worse by more than a "
    "margin) is reproduced when its interval lies above -margin and not reproduced when it lies wholly below it; "
    "anything else is inconclusive. Claim-specific guards (named in each rule) can only make a verdict inconclusive.",
    "",
    "Intervals are 95% percentile bootstraps (numpy, fixed resampling seed) over seeds and test items together: "
    "seeds are resampled, then items within each resampled seed, paired by seed and item where two arms share them "
    "(per-caption CIDEr-D, per-question exact match, per-image feature MSE and caption cosine, and each final "
    "adapter's per-item validation loss). A figure with one value per seed (steps to a threshold, weight spectra, "
    "component counts, best cosines to the vocabulary) is bootstrapped over seeds alone; with three seeds such an "
    "interval is narrower than a t interval (it cannot reach beyond the values it has), one more reason for the "
    "pilot's seed counts. First-round records keep "
    "their Student-t intervals over seeds until re-run; each claim names its interval method. The pilot-implied seed "
    "count is the number of seeds for 80% power to decide the claim at its smallest effect of interest at the 95% "
    "level, from the first round's per-seed SD (`python -m train study --plan` prints it and runs nothing).")


def effect(record: dict[str, Any]) -> str:
    value = record.get("smallest_effect")
    return "not set" if value is None else f"{value:g} {record.get('unit') or ''}".rstrip()


def power_lines(record: dict[str, Any]) -> list[str]:
    """The claim's kind and smallest effect of interest with its reason, the seeds run and those its pilot implies,
    and the interval method."""
    sd = record.get("pilot_sd")
    pilot = "no pilot SD" if sd is None else f"pilot SD {sd:.3g} per seed"
    if sd == 0:
        pilot += "; the pilot's seeds did not differ at all, a resolution artefact, so the count is a floor"
    return [f"- Claim kind: {record.get('kind') or 'not set'}; smallest effect of interest: {effect(record)} "
            f"({record.get('effect_why') or 'not set'})",
            f"- Seeds: {len(record['seeds'])} run; {record.get('seeds_needed') or 'unknown'} for 80% power at the "
            f"smallest effect ({pilot})",
            f"- Intervals: {record.get('interval_method') or 'not recorded'}"]


def multiplicity(records: list[dict[str, Any]]) -> str:
    """How many 95% intervals the report gives and how many would exclude their null by chance alone."""
    from train.study.power import intervals_in

    given = sum(len({(iv["mean"], iv["low"], iv["high"]) for iv in intervals_in([r.get("details"), r.get("bars")])})
                for r in records)  # an interval shown twice (a cell and its bar) is counted once
    judged = sum(len(judged_of(r)) for r in records)
    return (f"Multiplicity: this report gives {given} intervals at 95% (in the figures, details and plots; {judged} "
            f"of them decide verdicts). Were every null true, about {0.05 * given:.1f} of them ({0.05 * judged:.1f} of "
            "those deciding verdicts) would exclude it by chance alone; no correction is applied, so a single "
            "verdict resting on one interval near its bound is weak evidence.")


def judged_of(record: dict[str, Any]) -> list[dict]:
    from train.study import CLAIMS

    claim = CLAIMS.get(record["id"])
    return claim.judged(record["details"]) if claim is not None and claim.judged is not None else []


def write_report(records: list[dict[str, Any]], out: Path) -> Path:
    """Update out/findings.json, out/findings.md and out/findings/<claim>.png; returns the Markdown file."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    records = merged(out, records)
    plots = {}
    for record in records:
        path = plot_finding(record, out / "findings")
        if path is not None:
            plots[record["id"]] = f"findings/{path.name}"
    write_atomic(out / "findings.json", json.dumps({"claims": records}, indent=2))
    write_atomic(out / "findings.md", markdown(records, plots))
    return out / "findings.md"
