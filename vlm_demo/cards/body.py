"""The human-readable part of an adapter's model card (markdown under the metadata), written from the folder's
records (vlm_demo.cards.records): what the adapter is, how each stage trained it, its held-out figures, its known
limits, how to reproduce it and every held-out photo's caption. Nothing here is read back: figures are read from
the records or the card's metadata."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vlm_demo.cards.records import LABELS, Records
from vlm_demo.combos import COMBOS, DEFAULT_COMBO

DATA_WORDS = {"shapes": "synthetic shapes", "digits": "handwritten digits", "textiles": "three textile classes",
              "emoji": "emoji drawings", "clipart": "clip-art drawings"}
OPEN_WORLD = {"emoji", "clipart"}
CAPTIONER = COMBOS[DEFAULT_COMBO].encoder  # whose ImageNet head captions the drawings for encoders without one
FAMILY_RECIPE_FOLDER = "--family-recipe"  # a shipped folder that keeps its recipe in its name (Makefile SHIP_AS_mlp)
PhotoRow = tuple[str, bool, str]  # a held-out photo's name, whether its caption names the main object, the caption
# People's notes on a card (what its records cannot say, e.g. a legacy encoder): kept when the card is regenerated
NOTES_START = "<!-- notes: kept when the card is regenerated (python -m train.card) -->"
NOTES_END = "<!-- notes: end -->"
PROMPTS = ('Prompts: "Describe this image." (captions), shapes VQA (count,\ncolour, shape, position), "What digit is '
           'this?", and the textile defect question.')
PHOTOS_HELD_OUT = ("(photos: the test split of everyday photos shipped in installed packages, listed with their\n"
                   "licences in `train/data/photos.py`; never trained on, and no recipe was chosen on them)")


def family_recipe(run: dict[str, Any], name: str) -> str | None:
    """The combination `run` trained on the family recipe (train/configs/family.toml), else None: `make family-X`
    trains into runs/family-X, and a folder named ...--family-recipe says so in its name."""
    model = run.get("model") or {}
    family = str(model.get("combo") or model.get("adapter", ""))
    if Path(str(run.get("output_dir", ""))).name == f"family-{family}" or name.endswith(FAMILY_RECIPE_FOLDER):
        return family
    return None


def _words(names: list[str]) -> str:
    return ", ".join(names[:-1]) + f" and {names[-1]}" if len(names) > 1 else "".join(names)


def _parameters(records: Records) -> str:
    counts = [summary.get("trainable_parameters") or 0 for summary in records.summaries.values()]
    text = f"{counts[0]:,}" if counts else "?"
    if counts and max(counts) > counts[0]:
        text += f" in the adapter + {max(counts) - counts[0]:,} in the LLM's LoRA"
    return text


def _world(records: Records) -> str:
    seen = list(dict.fromkeys(d["name"] for run in records.runs.values() for d in run["data"]["train"]))
    seen_text = _words([DATA_WORDS.get(name, name) for name in seen])
    if not OPEN_WORLD & set(seen):
        return (f"It has seen {seen_text}, not the open world, so photos outside that world get captions about what it "
                "has seen.")
    from vlm_demo.encoders import ENCODERS

    encoder = ENCODERS.get(records.run["model"]["encoder"])
    if encoder is None or "class_head" in encoder.gives:
        return (f"It has seen {seen_text}. The drawings are captioned by the encoder's own ImageNet classifier "
                "(pseudo-captions: the class it is sure of, in everyday words such as the group a dog breed belongs "
                "to), so on photos it says what that classifier sees, in a sentence; objects ImageNet has no class for "
                "(people, buildings in general) are its blind spot.")
    return (f"It has seen {seen_text}. This encoder has no ImageNet classifier, so the drawings are captioned by "
            f"{CAPTIONER}'s (pseudo-captions: the class it is sure of), the same captions the other families learn; "
            "this adapter has to find those classes in its own encoder's features.")


def _llm_mode(caption: dict[str, Any]) -> str:
    if caption.get("llm_mode", "frozen") == "frozen":
        return "frozen LLM"
    kind = "4-bit QLoRA" if caption["llm_mode"] == "qlora" else "LoRA"
    lora_lr = f"; its own lr {caption['lora_lr']:g}" if caption.get("lora_lr") else ""
    return (f"LLM with {kind} (r={caption['lora_r']}, alpha={caption['lora_alpha']}, dropout "
            f"{caption['lora_dropout']}, on {', '.join(caption['lora_targets'])}{lora_lr}) trained together with the "
            "adapter")


def _stage_lines(records: Records) -> list[str]:
    lines = []
    for stage, summary in records.summaries.items():
        run = records.runs.get(stage) or {}
        data = ", ".join(f"{d['name']}{' on photo-like backdrops' if d.get('backdrop') == 'scene' else ''} "
                         f"({d.get('count', 'all')} images)" for d in (run.get("data") or {}).get("train", []))
        how = ("Earth Mover's Distance (POT, exact) between the adapter's tokens and the caption's token embeddings; "
               "no LLM forward" if run.get("stage") == "align" else
               f"cross-entropy on the answer tokens through the {_llm_mode(run.get('caption') or {})}")
        minutes, lr = (summary.get("train_seconds") or 0) / 60, (run.get("train") or {}).get("lr", "?")
        lines.append(f"- **{stage}**: {how}; data {data}; {summary.get('steps', '?')} steps of batch "
                     f"{summary.get('batch_size', '?')} (lr {lr}) from a training set of {summary.get('samples', '?')} "
                     f"samples, {minutes:.1f} min on {summary.get('device', '?')}")
    return lines


def _results(records: Records) -> list[str]:
    return [f"| {LABELS[group, key]} | {value:.{2 if group == 'caption' else 3}f} |"
            for (group, key), value in records.metrics().items()]


def _baseline_limits(metrics: dict[str, Any]) -> list[str]:
    limits = [f"- {name}: {m['lenient']:.0%} is no better than always answering the commonest class "
              f"({m['majority_class_baseline']:.0%})."
              for name, m in ((k.removesuffix("_accuracy"), v) for k, v in metrics.items() if k.endswith("_accuracy"))
              if m["lenient"] <= m["majority_class_baseline"] + 0.02]
    vqa, majority = metrics.get("vqa_exact_match", {}), metrics.get("vqa_majority_answer_baseline", {})
    if "overall" in vqa and "overall" in majority and vqa["overall"] <= majority["overall"] + 0.02:
        limits.append(f"- shapes VQA: {vqa['overall']:.0%} is no better than always answering the commonest answer "
                      f"for each question type ({majority['overall']:.0%}).")
    return limits


def _limits(records: Records) -> list[str]:
    metrics = records.evaluation
    limits = _baseline_limits(metrics)
    shapes = metrics.get("shapes_attributes", {})
    single = shapes.get("single_object_colour_and_shape")
    if records.run["model"]["adapter"] == "label":
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
    photos = metrics.get("photos_object_named")
    if photos:
        top1, top3 = photos.get("encoder_top1_baseline"), photos.get("encoder_top3_baseline")
        baseline = f" (the encoder's own top-1 label: {top1:.0%})" if top1 is not None else ""
        baseline = baseline[:-1] + f", its top-3: {top3:.0%})" if top3 is not None and baseline else baseline
        everyday = photos.get("encoder_top1_everyday_baseline")
        if everyday is not None and baseline:
            baseline = baseline[:-1] + f"; in everyday words, as the pseudo-captions say them, top-1: {everyday:.0%})"
        which = ("test-split photos" if photos.get("split") == "test" else
                 "photos of today's dev split (scored before the test split existed)")
        limits.append(f"- Everyday photos: the caption names the main object in {photos['score']:.0%} of "
                      f"{photos['count']} {which}{baseline}; every photo's caption is listed below.")
    return limits


def photo_section(photos: list[PhotoRow]) -> str:
    """Every held-out photo's caption, and whether it names the main object (nothing picked out)."""
    if not photos:
        return ""
    lines = [f"| {name} | {'yes' if named else 'no'} | {caption.replace('|', '/').replace(chr(10), ' ')} |"
             for name, named, caption in photos]
    return ("\n## Every held-out photo\n\nThe caption of each evaluation photo (greedy, as `train eval` ran it), and "
            "whether it names the main object. The app's example photos (`assets/examples/`) are the four of them "
            "that ship with scikit-image (chelsea, coffee, rocket, astronaut), picked before any adapter was trained "
            "on drawings, not by how well one captions them.\n\n| photo | named | caption |\n| --- | --- | --- |\n"
            + "\n".join(lines) + "\n")


def body(records: Records, name: str, photos: list[PhotoRow], notes: str = "") -> str:
    """The card's markdown for the folder `name` (its folder name, or the hub repo's) from its records, with
    people's `notes` under the title."""
    run, model = records.run, records.run["model"]
    lora_note = " (frozen)"
    if any(r.get("stage") == "caption" and (r.get("caption") or {}).get("llm_mode", "frozen") != "frozen"
           for r in records.runs.values()):
        lora_note = (", whose attention layers carry a small LoRA trained with the adapter (`lora/`, peft format; "
                     "the app switches it on only for this adapter)")
    evaluated = run["data"].get("eval", [])
    data = "Data: train splits only" + (f" {PHOTOS_HELD_OUT}" if any(d["name"] == "photos" for d in evaluated) else "")
    notes = f"\n{NOTES_START}\n\n{notes.strip()}\n\n{NOTES_END}\n" if notes.strip() else ""
    reproduce, recipe = f"make train-{run['name']}", ""
    if (family := family_recipe(run, name)) is not None:
        reproduce = f"make family-{family}"
        recipe = ("\n\nTrained with the family recipe (`train/configs/family.toml`): the same data, steps, learning "
                  "rate and seed as every other family on the leaderboard, so differences between them are the "
                  "families'.")
    options = json.dumps(model["adapter_options"]) if model.get("adapter_options") else "defaults"
    return f"""# `{run['name']}` adapter: {model['encoder']} -> {model['adapter']} -> {model['llm']}
{notes}
A `{model['adapter']}` adapter that turns `{model['encoder']}` image features into pseudo-tokens for
`{model['llm']}`{lora_note}. Trained on a 2-core CPU with a small budget. {_world(records)}{recipe}

- Trainable parameters: {_parameters(records)}
- Options: `{options}`

## Training
{data}. {PROMPTS}

{chr(10).join(_stage_lines(records))}

![loss curve](loss_curve.png)

## Held-out results (test splits: {", ".join(f"{d['name']} ({d.get('count', 'all')})" for d in evaluated)})

| metric | value |
| --- | --- |
{chr(10).join(_results(records))}

## Known limits
{chr(10).join(_limits(records)) or "- None measured beyond the small training budget."}

Reproduce: `{reproduce}` (configs in `train/configs/`; the make target trains, evaluates and ships).
{photo_section(photos)}"""
