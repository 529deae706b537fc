"""Ship a trained adapter: copy it into assets/adapters/ with a model card and a loss-curve image. The card's front
matter carries the held-out metrics (`model-index`) and the training record (`training`: one entry per stage) that
`vlm_demo.leaderboard` reads."""

from __future__ import annotations

import csv
import json
import shutil
import textwrap
from pathlib import Path

from huggingface_hub import EvalResult, ModelCardData

from train.config import TrainConfig
from train.pseudo_captions import CAPTIONER
from train.run_files import atomic_folder
from vlm_demo.adapters import LORA_FOLDER
from vlm_demo.combos import ADAPTERS_DIR
from vlm_demo.encoders import ENCODERS
from vlm_demo.hub import HUB_ID
from vlm_demo.leaderboard import CARD_METRICS, stage_records
from vlm_demo.llms import LLMS

DATA_WORDS = {"shapes": "synthetic shapes", "digits": "handwritten digits", "textiles": "three textile classes",
              "emoji": "emoji drawings", "clipart": "clip-art drawings"}
OPEN_WORLD = {"emoji", "clipart"}


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
        assemble(config, staging)
    return target


def assemble(config: TrainConfig, target: Path) -> None:
    """Write a trained adapter's release into the empty folder `target`: weights, LoRA, card, loss curve, metrics."""
    output = Path(config.output_dir)
    metrics = json.loads((output / "eval.json").read_text())
    for name in ("config.json", "model.safetensors"):
        shutil.copy2(output / "adapter" / name, target / name)
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
    (target / "README.md").write_text(_card(config, metrics, summaries, runs) + _photo_table(target))


def card_metadata(config: TrainConfig, metrics: dict, training: list[dict] | None = None) -> ModelCardData:
    """Hub metadata: base models by hub id, hub data sets trained on, held-out metrics as eval results, and the
    training record (`training`: stage, run, steps, batch, lr, llm_mode, minutes, device, trainable_parameters)."""
    specs = (LLMS.get(config.model.llm), ENCODERS.get(config.model.encoder))
    bases = [spec.hub_id for spec in specs if spec is not None and spec.hub_id]
    if config.model.llm not in LLMS and HUB_ID.match(config.model.llm) and not Path(config.model.llm).exists():
        bases.insert(0, config.model.llm)  # an LLM named by its hub id
    datasets = [d["name"].removeprefix("hub:") for d in config.data.train if d["name"].startswith("hub:")]
    evaluated = config.data.eval[0]["name"] if config.data.eval else "held-out"
    results = [EvalResult(task_type="image-to-text", dataset_type=evaluated.removeprefix("hub:"),
                          dataset_name=DATA_WORDS.get(evaluated, evaluated.removeprefix("hub:")), metric_type=key,
                          metric_name=label, metric_value=round(float(metrics[group][key]), 4))
               for group, key, label in CARD_METRICS if key in metrics.get(group, {})]
    return ModelCardData(base_model=bases or None, datasets=datasets or None, library_name="vlm_demo",
                         license="apache-2.0", tags=["vision-language-adapter", "vlm_demo"],
                         pipeline_tag="image-to-text", model_name=f"{config.name} adapter",
                         eval_results=results or None, training=training or None)


def _photo_table(folder: Path) -> str:
    """Every held-out photo's caption, and whether it names the main object (nothing picked out)."""
    from train.data.openworld import PHOTOS
    from train.evaluate import names_object

    path = folder / "eval_predictions.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []
    rows = [row for row in rows if row["task"] == "name"]
    if not rows:
        return ""
    lines = []
    for row in rows:
        name = row["image"].removeprefix("photos-")
        keywords = PHOTOS[name][2] if name in PHOTOS else ()
        caption = row["answer"].replace("|", "/").replace("\n", " ")
        lines.append(f"| {name} | {'yes' if names_object(row['answer'], list(keywords)) else 'no'} | {caption} |")
    return ("\n## Every held-out photo\n\nThe caption of each evaluation photo (greedy, as `train eval` ran it), and "
            "whether it names the main object. The app's example photos (`assets/examples/`) are the four of them "
            "that ship with scikit-image (chelsea, coffee, rocket, astronaut), picked before any adapter was trained "
            "on drawings, not by how well one captions them.\n\n| photo | named | caption |\n| --- | --- | --- |\n"
            + "\n".join(lines) + "\n")


def _llm_mode(caption: dict) -> str:
    if caption["llm_mode"] == "frozen":
        return "frozen LLM"
    kind = "4-bit QLoRA" if caption["llm_mode"] == "qlora" else "LoRA"
    targets = ", ".join(caption["lora_targets"])
    lora_lr = f"; its own lr {caption['lora_lr']:g}" if caption.get("lora_lr") else ""
    return (f"LLM with {kind} (r={caption['lora_r']}, alpha={caption['lora_alpha']}, dropout "
            f"{caption['lora_dropout']}, on {targets}{lora_lr}) trained together with the adapter")


def _card(config: TrainConfig, metrics: dict, summaries: dict, runs: dict) -> str:
    counts = [summary.get("trainable_parameters", 0) for summary in summaries.values()]
    params = f"{counts[0]:,}" if counts else "?"
    if counts and max(counts) > counts[0]:
        params += f" in the adapter + {max(counts) - counts[0]:,} in the LLM's LoRA"
    rows = []
    for group, key, label in CARD_METRICS:
        if group in metrics and key in metrics[group]:
            value = metrics[group][key]
            rows.append(f"| {label} | {value:.3f} |" if group != "caption" else f"| {label} | {value:.2f} |")
    limits = [f"- {name}: {m['lenient']:.0%} is no better than always answering the commonest class "
              f"({m['majority_class_baseline']:.0%})."
              for name, m in ((k.removesuffix("_accuracy"), v) for k, v in metrics.items() if k.endswith("_accuracy"))
              if m["lenient"] <= m["majority_class_baseline"] + 0.02]
    vqa, majority = metrics.get("vqa_exact_match", {}), metrics.get("vqa_majority_answer_baseline", {})
    if "overall" in vqa and "overall" in majority and vqa["overall"] <= majority["overall"] + 0.02:
        limits.append(f"- shapes VQA: {vqa['overall']:.0%} is no better than always answering the commonest answer "
                      f"for each question type ({majority['overall']:.0%}).")
    shapes = metrics.get("shapes_attributes", {})
    single = shapes.get("single_object_colour_and_shape")
    if config.model.adapter == "label":
        limits.append("- By design this family sees only the encoder's ImageNet class probabilities: no colours, "
                      "positions, counts, digits or textile defects. Its shapes, digits and textiles figures show "
                      "that; they are not a training shortfall.")
    elif single is not None and single < 0.5:
        limits.append(f"- Shapes: colour and shape are both right in {single:.0%} of single-object test captions; "
                      "the adapter has learnt the caption style more than the attributes (more caption steps needed).")
    elif single is not None:
        limits.append(f"- Shapes: colour and shape are both right in {single:.0%} of single-object test captions, "
                      f"so about {1 - single:.0%} still get one of them wrong. Over all test images (1-4 objects) "
                      f"every colour is named in {shapes['colour']:.0%}, every shape in {shapes['shape']:.0%}, the "
                      f"count in {shapes['count']:.0%}.")
    lora_note = " (frozen)"
    if any(run["stage"] == "caption" and run["caption"]["llm_mode"] != "frozen" for run in runs.values()):
        lora_note = (", whose attention layers carry a small LoRA trained with the adapter (`lora/`, peft format; "
                     "the app switches it on only for this adapter)")
    evals = ", ".join(f"{d['name']} ({d.get('count', 'all')})" for d in config.data.eval)
    seen = list(dict.fromkeys(d["name"] for run in runs.values() for d in run["data"]["train"]))
    seen_text = ", ".join(DATA_WORDS.get(name, name) for name in seen)
    encoder = ENCODERS.get(config.model.encoder)
    if OPEN_WORLD & set(seen) and (encoder is None or "class_head" in encoder.gives):
        world = (f"It has seen {seen_text}. The drawings are captioned by the encoder's own ImageNet classifier "
                 "(pseudo-captions: the class it is sure of, with the everyday word for groups such as dog breeds), so "
                 "on photos it says what that classifier sees, in a sentence; objects ImageNet has no class for "
                 "(people, buildings in general) are its blind spot.")
    elif OPEN_WORLD & set(seen):
        world = (f"It has seen {seen_text}. This encoder has no ImageNet classifier, so the drawings are captioned "
                 f"by {CAPTIONER}'s (pseudo-captions: the class it is sure of), the same captions the other families "
                 "learn; this adapter has to find those classes in its own encoder's features.")
    else:
        world = (f"It has seen {seen_text}, not the open world, so photos outside that world get captions about "
                 "them.")
    photos = metrics.get("photos_object_named")
    if photos:
        top1, top3 = photos.get("encoder_top1_baseline"), photos.get("encoder_top3_baseline")
        baseline = f" (the encoder's own top-1 label: {top1:.0%})" if top1 is not None else ""
        baseline = baseline[:-1] + f", its top-3: {top3:.0%})" if top3 is not None and baseline else baseline
        limits.append(f"- Everyday photos: the caption names the main object in {photos['score']:.0%} of "
                      f"{photos['count']} held-out photos{baseline}; every photo's caption is listed below.")
    stage_lines = []
    for stage, summary in summaries.items():
        run = runs[stage]
        data = ", ".join(f"{d['name']}{' on photo-like backdrops' if d.get('backdrop') == 'scene' else ''} "
                         f"({d.get('count', 'all')} images)" for d in run["data"]["train"])
        how = ("Earth Mover's Distance (POT, exact) between the adapter's tokens and the caption's token embeddings; "
               "no LLM forward" if run["stage"] == "align" else
               f"cross-entropy on the answer tokens through the {_llm_mode(run['caption'])}")
        stage_lines.append(f"- **{stage}**: {how}; data {data}; {summary.get('steps', '?')} steps of batch "
                           f"{summary.get('batch_size', '?')} (lr {run['train']['lr']}) from a training set of "
                           f"{summary.get('samples', '?')} samples, {summary.get('train_seconds', 0) / 60:.1f} min "
                           f"on {summary.get('device', '?')}")
    reproduce, recipe = f"make train-{config.name}", ""
    if config.model.combo:  # the family recipe (train/configs/family.toml)
        reproduce = f"make family-{config.model.combo}"
        recipe = ("\n\nTrained with the family recipe (`train/configs/family.toml`): the same data, steps, learning "
                  "rate and seed as every other family on the leaderboard, so differences between them are the "
                  "families'.")
    return f"""---
{card_metadata(config, metrics, stage_records(summaries, runs)).to_yaml()}
---
# `{config.name}` adapter: {config.model.encoder} -> {config.model.adapter} -> {config.model.llm}

A `{config.model.adapter}` adapter that turns `{config.model.encoder}` image features into pseudo-tokens for
`{config.model.llm}`{lora_note}. Trained on a 2-core CPU with a small budget. {world}{recipe}

- Trainable parameters: {params}
- Options: `{json.dumps(config.model.adapter_options) if config.model.adapter_options else "defaults"}`

## Training
Data: train splits only (held-out photos: everyday photos shipped in installed packages, listed with their licences
in `train/data/openworld.py`; never trained on). Prompts: "Describe this image." (captions), shapes VQA (count,
colour, shape, position), "What digit is this?", and the textile defect question.

{chr(10).join(stage_lines)}

![loss curve](loss_curve.png)

## Held-out results (test splits: {evals})

| metric | value |
| --- | --- |
{chr(10).join(rows)}

## Known limits
{chr(10).join(limits) or "- None measured beyond the small training budget."}

Reproduce: `{reproduce}` (configs in `train/configs/`; the make target trains, evaluates and ships).
"""
