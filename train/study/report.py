"""The study's outputs: findings.json (every claim's record), findings.md (a table and a section per claim) and a
loss-curve plot per claim that has curves. A run of some claims updates their records and keeps the others."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from train.run_files import write_atomic

TINY_NOTE = ("These numbers come from the `--tiny` budget (a random 2-layer LLM, a few images and steps): they show "
             "that each experiment runs end to end and say nothing about the papers.")


def merged(out: Path, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Earlier records from out/findings.json with these replacing theirs, in claim order of first appearance. A
    record re-made from the same budget and seeds keeps the larger CPU minutes: re-reporting from finished runs costs
    seconds, reproducing them does not."""
    path = Path(out) / "findings.json"
    earlier = json.loads(path.read_text())["claims"] if path.is_file() else []
    by_id = {record["id"]: record for record in earlier}
    for record in records:
        before = by_id.get(record["id"])
        if before and (before["budget"], before["seeds"]) == (record["budget"], record["seeds"]):
            record = {**record, "cpu_minutes": max(before["cpu_minutes"], record["cpu_minutes"])}
        by_id[record["id"]] = record
    return list(by_id.values())


def plot_curves(record: dict[str, Any], folder: Path) -> Path | None:
    """Mean curve per arm (matplotlib, PNG; training loss over steps unless details name `curve_axes`), or None when
    the claim has no curves."""
    if not record.get("curves"):
        return None
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot, ticker

    figure, axes = pyplot.subplots(figsize=(6, 3.5))
    for name, (steps, values) in record["curves"].items():
        axes.plot(steps, values, label=name)
    values = [v for _, ys in record["curves"].values() for v in ys if v is not None]
    if values and min(values) > 0 and max(values) > 3 * min(values):
        axes.set_yscale("log")  # a high first value would squash the differences that matter at the end
        for axis in (axes.yaxis.set_major_formatter, axes.yaxis.set_minor_formatter):
            axis(ticker.FormatStrFormatter("%g"))
    x_label, y_label = record.get("details", {}).get("curve_axes", ("step", "training loss"))
    axes.set_xlabel(x_label)
    axes.set_ylabel(f"{y_label} (mean of {len(record['seeds'])} seeds)")
    axes.set_title(record["id"])
    axes.legend()
    figure.tight_layout()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{record['id']}.png"
    figure.savefig(path, dpi=110)
    pyplot.close(figure)
    return path


def markdown(records: list[dict[str, Any]], plots: dict[str, str]) -> str:
    lines = ["# Findings: the seed papers' claims, re-run here", "",
             "Written by `python -m train study`; each claim's exact command is in its row. Verdicts follow the rule "
             "under each claim; a result that contradicts a paper is a finding, not a failure. CPU minutes are what "
             "the claim itself spent: runs it shares with a claim before it (same arm and seed) are counted there. The "
             "families trained on one recipe and shipped are compared in [families.md](families.md).", ""]
    if any(record["budget"] == "tiny" for record in records):
        lines += [f"> {TINY_NOTE}", ""]
    lines += ["| claim | seed, section | paper | ours | verdict | budget | CPU min | command |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in records:
        cells = [r["id"], f"{r['seed']}, {r['section']}", r["paper_figure"], r["figure"], f"**{r['verdict']}**",
                 f"{r['budget']}, seeds {r['seeds']}", f"{r['cpu_minutes']:.1f}", f"`{r['command']}`"]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    for r in records:
        lines += ["", f"## {r['id']}: {r['statement']}", "", f"- Paper ({r['seed']}, {r['section']}): "
                  f"{r['paper_figure']}", f"- Ours: {r['figure']}", f"- Verdict: **{r['verdict']}**. Rule: {r['rule']}",
                  f"- Budget: {r['budget']}, seeds {r['seeds']}, {r['cpu_minutes']:.1f} CPU minutes; `{r['command']}`"]
        if r["id"] in plots:
            lines += ["", f"![{r['id']}]({plots[r['id']]})"]
    return "\n".join(lines) + "\n"


def write_report(records: list[dict[str, Any]], out: Path) -> Path:
    """Update out/findings.json, out/findings.md and out/findings/<claim>.png; returns the Markdown file."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    records = merged(out, records)
    plots = {}
    for record in records:
        path = plot_curves(record, out / "findings")
        if path is not None:
            plots[record["id"]] = f"findings/{path.name}"
    write_atomic(out / "findings.json", json.dumps({"claims": records}, indent=2))
    write_atomic(out / "findings.md", markdown(records, plots))
    return out / "findings.md"
