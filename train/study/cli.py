"""`python -m train study [CLAIM ...] [--tiny] [--seeds N] [--out DIR] [--root DIR] [--list]`: run registered claims
(all by default) and write findings.md, findings.json and plots."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from train.study import CLAIMS, Budget, labelled, run_claim
from train.study.report import write_report

TRAIN_IMAGES, STEPS = 400, 300  # the full budget's; the scale ladder multiplies both


def full_base(scale: int = 1) -> list[str]:
    """The full budget's overrides, with `scale` times the training images and steps (the scale ladder)."""
    return [f'data.train=[{{name="shapes",count={TRAIN_IMAGES * scale},vqa_per_image=0}}]',
            'data.val=[{name="shapes",count=40,vqa_per_image=0}]',
            'data.eval=[{name="shapes",count=50,vqa_per_image=0}]', "train.batch_size=8",
            f"train.max_steps={STEPS * scale}", "train.val_every=50", "train.log_every=10", "train.save_every=100",
            "train.lr=1e-3", "train.snapshots=true", "eval.max_new_tokens=24"]



TINY_BASE = ['data.train=[{name="shapes",count=8,vqa_per_image=0}]',
             'data.val=[{name="shapes",count=3,vqa_per_image=0}]',
             'data.eval=[{name="shapes",count=3,vqa_per_image=0}]', "train.batch_size=4", "train.max_steps=4",
             "train.val_every=4", "train.log_every=1", "train.save_every=1000", "train.warmup_steps=0",
             "train.lr=3e-3", "train.snapshots=true", "train.trackers=[]", "eval.max_new_tokens=4"]


def budget(tiny: bool, root: Path, seeds: int | None, scale: int = 1) -> Budget:
    """The tiny budget (tests), the full one (findings), or the full one at `scale` times the training images and
    steps (the scale ladder), with its runs under `root`."""
    root = Path(root).resolve()
    if tiny:
        from train.study.tiny import tiny_llm_folder

        llm = tiny_llm_folder(root / "tiny-llm")
        return Budget("tiny", root, list(range(seeds or 2)), [f'model.llm="{llm}"', *TINY_BASE])
    if scale > 1:
        return Budget(f"full-x{scale}", root, list(range(seeds or 2)), full_base(scale), scale)
    return Budget("full", root, list(range(seeds or 3)), full_base())


CLAIM_MODULES = ("claims", "claims_components", "claims_training", "claims_tinylm", "claims_families",
                 "claims_encoders", "claims_standin", "claims_headlines", "claims_efficiency")


def load_claims() -> None:
    """Import every module of claims (each registers its own, in this order)."""
    import importlib

    for module in CLAIM_MODULES:
        importlib.import_module(f"train.study.{module}")


def plan_lines(published: Path, claims: list[str]) -> list[str]:
    """Per claim: its kind, the pilot's per-seed SD (the published record's details), its smallest effect of interest
    and the seeds needed for 80% power; a claim without a published record has no pilot."""
    records = {record["id"]: record for record in json.loads(published.read_text())["claims"]} \
        if published.is_file() else {}
    lines = [f"{'claim':26} {'kind':12} {'pilot SD':>10} {'smallest':>9} {'seeds run':>9} {'seeds needed':>12}"]
    for claim_id in claims:
        claim = CLAIMS[claim_id]
        record = labelled(records[claim_id]) if claim_id in records else {}
        sd, needed = record.get("pilot_sd"), record.get("seeds_needed")
        lines.append(f"{claim_id:26} {claim.kind:12} {'-' if sd is None else f'{sd:.4g}':>10} "
                     f"{claim.smallest_effect:>9g} {len(record.get('seeds', [])) or '-':>9} "
                     f"{needed or '-':>12}")
    return lines


def folders(args: argparse.Namespace) -> tuple[Path, Path]:
    """(runs, report) folders: runs/study and docs by default, runs/study-tiny and its docs with --tiny; the scale
    ladder's always apart (ROOT-xN, OUT/scale-xN), so its records never replace the full budget's."""
    root = Path(args.root or ("runs/study-tiny" if args.tiny else "runs/study"))
    out = Path(args.out) if args.out else root / "docs" if args.tiny else Path("docs")
    if args.scale > 1:
        return root.with_name(f"{root.name}-x{args.scale}"), out / f"scale-x{args.scale}"
    return root, out


def main(argv: list[str] | None = None) -> int:
    load_claims()
    parser = argparse.ArgumentParser(prog="python -m train study", description=__doc__)
    parser.add_argument("claims", nargs="*", help=f"claim ids (default: all): {', '.join(CLAIMS)}")
    parser.add_argument("--tiny", action="store_true", help="the test budget: a tiny random LLM, seconds per claim")
    parser.add_argument("--seeds", type=int, help="seeds per arm (default 3; 2 with --tiny)")
    parser.add_argument("--out", help="folder for findings.md/json and plots (default docs, or ROOT/docs with --tiny)")
    parser.add_argument("--root", help="folder of the runs (default runs/study, or runs/study-tiny with --tiny)")
    parser.add_argument("--scale", type=int, default=1,
                        help="the scale ladder: N times the full budget's training images and steps, 2 seeds by "
                             "default, runs in ROOT-xN and the report in docs/scale-xN")
    parser.add_argument("--list", action="store_true", help="list the registered claims and stop")
    parser.add_argument("--plan", action="store_true",
                        help="print each claim's pilot SD (from findings.json), smallest effect of interest and the "
                             "seeds for 80%% power (runs nothing)")
    parser.add_argument("--relabel", action="store_true",
                        help="write the report again from findings.json under the current labels and deviations "
                             "(runs nothing)")
    args = parser.parse_args(argv)
    if args.list:
        for claim in CLAIMS.values():
            print(f"{claim.id}: {claim.statement} ({claim.seed}, {claim.section})")
        return 0
    if args.plan:
        print("\n".join(plan_lines(folders(args)[1] / "findings.json", args.claims or list(CLAIMS))))
        return 0
    unknown = [c for c in args.claims if c not in CLAIMS]
    if unknown:
        print(f"error: unknown claim(s) {', '.join(unknown)}; known: {', '.join(CLAIMS)}", file=sys.stderr)
        return 2
    if args.seeds is not None and args.seeds < 1:
        print("error: --seeds must be at least 1", file=sys.stderr)
        return 2
    if args.scale < 1 or (args.scale > 1 and args.tiny):
        print("error: --scale must be at least 1, and is not for the --tiny budget", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    root, out = folders(args)
    plan = budget(args.tiny, root, args.seeds, args.scale)
    if args.relabel:
        published = out / "findings.json"
        records = [labelled(record) for record in json.loads(published.read_text())["claims"]]
    else:
        records = [run_claim(claim, plan) for claim in args.claims or list(CLAIMS)]
    report = write_report(records, out)
    for record in records:
        print(json.dumps({k: record[k] for k in ("id", "figure", "verdict", "cpu_minutes")}))
    print(f"wrote {report}")
    return 0
