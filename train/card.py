"""Ship a trained adapter: copy it into assets/adapters/ with its records (eval.json, training.json), a loss-curve
image and a model card written from those records by `vlm_demo.cards`. `python -m train.card FOLDER... | --all`
rewrites the cards of shipped folders from their records, keeping people's notes."""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import textwrap
from pathlib import Path

from train.config import TrainConfig
from train.run_files import atomic_folder
from vlm_demo.adapters import LORA_FOLDER
from vlm_demo.cards import PhotoRow, card_notes, card_text, write_card
from vlm_demo.combos import ADAPTERS_DIR, shipped_folders


def _read_losses(folder: Path) -> tuple[list[int], list[float]]:
    path = folder / "metrics.csv"
    if not path.is_file():
        return [], []
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    return [int(r["step"]) for r in rows], [float(r["loss"]) for r in rows]


def loss_curve(curves: dict[str, tuple[list[int], list[float]]], target: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = {stage: curve for stage, curve in curves.items() if curve[0]} or curves
    missing = [stage for stage in curves if stage not in shown]
    if missing:  # stages of an older release, shipped before losses were recorded
        title += "\n" + textwrap.fill(f"(no loss record shipped for {', '.join(missing)})", 50 * len(shown))
    figure, axes = plt.subplots(1, len(shown), figsize=(5 * len(shown), 3.6), squeeze=False)
    for axis, (stage, (steps, losses)) in zip(axes[0], shown.items()):
        axis.plot(steps, losses, color="#3b6fd4", linewidth=1.8)
        axis.set_title(stage, fontsize=11)
        axis.set_xlabel("optimizer step")
        axis.set_ylabel("EMD to caption embeddings" if stage.startswith("align") else "caption cross-entropy")
        axis.grid(alpha=0.3)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(target, dpi=110)
    plt.close(figure)


def _summary(folder: Path) -> dict:
    path = folder / "summary.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def stage_chain(output: Path) -> dict[str, Path]:
    """The runs that built an adapter, oldest first, found by following each run's `model.init_from`."""
    chain: list[tuple[str, Path]] = []
    folder: Path | None = output
    while folder is not None and (folder / "config.json").is_file() and len(chain) < 10:
        run = json.loads((folder / "config.json").read_text())
        chain.append((f"{run['stage']} ({folder.name})", folder))
        parent = run["model"].get("init_from")
        folder = Path(parent).parent if parent else None
    return dict(reversed(chain))


def shipped_history(stages: dict[str, Path]) -> dict:
    """The training record of a shipped adapter folder the oldest run started from (its `training.json`), so a run
    continued from a release keeps the stages before it; empty when the chain starts from scratch or a run."""
    if not stages:
        return {}
    oldest = json.loads((next(iter(stages.values())) / "config.json").read_text())
    parent = oldest["model"].get("init_from")
    record = Path(parent) / "training.json" if parent else None
    return json.loads(record.read_text()) if record is not None and record.is_file() else {}


def ship(config: TrainConfig) -> Path:
    """Copy output_dir/adapter to assets/adapters/<encoder>--<adapter>--<llm>/ (or `ship_as`) with README.md and
    loss_curve.png; the folder is filled beside the old one and swapped in by renames, so a failure leaves the shipped
    adapter as it was."""
    if config.ship_as and (Path(config.ship_as).name != config.ship_as or config.ship_as.startswith(".")):
        raise ValueError(f"ship_as must be a plain folder name under {ADAPTERS_DIR}, got {config.ship_as!r}")
    target = ADAPTERS_DIR / (config.ship_as or f"{config.model.encoder}--{config.model.adapter}--{config.model.llm}")
    with atomic_folder(target) as staging:
        assemble(config, staging, name=target.name)
    return target


def assemble(config: TrainConfig, target: Path, name: str | None = None) -> None:
    """Write a trained adapter's release into the empty folder `target` (shipped as `name`, default its own name):
    weights, LoRA, records, loss curve and the card written from the records."""
    output = Path(config.output_dir)
    metrics = json.loads((output / "eval.json").read_text())
    for file in ("config.json", "model.safetensors"):
        shutil.copy2(output / "adapter" / file, target / file)
    if (output / "adapter" / LORA_FOLDER).is_dir():
        shutil.copytree(output / "adapter" / LORA_FOLDER, target / LORA_FOLDER)
    if (output / "eval_predictions.jsonl").is_file():
        shutil.copy2(output / "eval_predictions.jsonl", target / "eval_predictions.jsonl")
    stages = stage_chain(output)
    earlier = shipped_history(stages)
    summaries = earlier.get("stages", {}) | {stage: _summary(folder) for stage, folder in stages.items()}
    runs = earlier.get("runs", {}) | {stage: json.loads((folder / "config.json").read_text())
                                      for stage, folder in stages.items()}
    losses = {stage: earlier.get("losses", {}).get(stage, [[], []]) for stage in earlier.get("stages", {})}
    losses |= {stage: list(_read_losses(folder)) for stage, folder in stages.items()}
    loss_curve(losses, target / "loss_curve.png", f"{config.name} adapter: {config.model.encoder} -> "
               f"{config.model.llm}")
    (target / "eval.json").write_text(json.dumps(metrics, indent=2))
    (target / "training.json").write_text(json.dumps({"stages": summaries, "runs": runs, "losses": losses},
                                                     indent=2))
    write_card(target, photo_rows(target), name=name)


def photo_rows(folder: Path) -> list[PhotoRow]:
    """Every held-out photo's caption in the folder's eval_predictions.jsonl, and whether it names the main object."""
    from train.data.openworld import PHOTOS
    from train.evaluate import names_object

    path = folder / "eval_predictions.jsonl"
    predictions = [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []
    rows = []
    for row in (row for row in predictions if row["task"] == "name"):
        name = row["image"].removeprefix("photos-")
        keywords = PHOTOS[name][2] if name in PHOTOS else ()
        rows.append((name, names_object(row["answer"], list(keywords)), row["answer"]))
    return rows


def regenerate(folder: Path) -> list[str]:
    """Rewrite a shipped folder's card from its eval.json and training.json, keeping the notes between the card's
    notes markers; returns the old card's text lines the new one no longer has (for a person to check)."""
    old = card_text(folder)
    write_card(folder, photo_rows(folder), notes=card_notes(folder))
    kept = set(card_text(folder).splitlines())
    return [line for line in old.splitlines() if line.strip() and line not in kept]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.card", description=regenerate.__doc__)
    parser.add_argument("folders", nargs="*", type=Path, help="shipped adapter folders (assets/adapters/NAME)")
    parser.add_argument("--all", action="store_true", help=f"every folder under {ADAPTERS_DIR}")
    args = parser.parse_args(argv)
    folders = args.folders + (shipped_folders() if args.all else [])
    if not folders:
        parser.error("name a folder or give --all")
    for folder in folders:
        try:
            dropped = regenerate(folder)
        except (OSError, ValueError, KeyError) as error:
            print(f"error: {folder}: {error}", file=sys.stderr)
            return 2
        print(f"{folder / 'README.md'}: written from eval.json and training.json")
        for line in dropped:
            print(f"  no longer in the card: {line[:150]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
