"""The figures of an adapter checkpoint folder, from the structured records every shipped folder carries: eval.json
(held-out metrics, by group and key) and training.json (stage summaries, run configs and losses). The card
(vlm_demo.cards.card) is written from them; the leaderboard reads them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# (eval.json group, key, the metric's name on cards: the model-index `name` and the Held-out results table label)
CARD_METRICS = [
    ("shapes_attributes", "single_object_colour_and_shape", "shapes captions: colour and shape both right (1 object)"),
    ("shapes_attributes", "colour", "shapes captions: every colour named"),
    ("shapes_attributes", "shape", "shapes captions: every shape named"),
    ("shapes_attributes", "count", "shapes captions: count right"),
    ("vqa_exact_match", "overall", "shapes VQA exact match (all types)"),
    ("vqa_majority_answer_baseline", "overall", "shapes VQA: always answering the commonest answer per question type"),
    ("digits_accuracy", "lenient", "digits accuracy, class named (thesis)"),
    ("digits_accuracy", "strict", "digits accuracy, strict"),
    ("digits_accuracy", "majority_class_baseline", "digits: always answering the commonest class"),
    ("textiles_accuracy", "lenient", "textiles accuracy, class named (thesis)"),
    ("textiles_accuracy", "strict", "textiles accuracy, strict"),
    ("textiles_accuracy", "majority_class_baseline", "textiles: always answering the commonest class"),
    ("caption", "bleu4", "shapes caption BLEU-4 (sacrebleu)"),
    ("caption", "cider", "shapes caption CIDEr-D"),
    ("photos_object_named", "score", "everyday photos: the caption names the main object"),
    ("photos_object_named", "encoder_top1_baseline", "everyday photos: the encoder's top-1 ImageNet label names it"),
    ("photos_object_named", "encoder_top3_baseline", "everyday photos: one of the encoder's top-3 labels names it"),
    ("photos_object_named", "encoder_top1_everyday_baseline",
     "everyday photos: the encoder's top-1 label in everyday words names it"),
    ("photos_object_named", "encoder_top3_everyday_baseline",
     "everyday photos: one of the encoder's top-3 labels in everyday words names it"),
]
LABELS = {(group, key): label for group, key, label in CARD_METRICS}


@dataclass
class Stage:
    """One training run of an adapter, as its training record has it."""

    stage: str
    run: str
    steps: int | None = None
    batch: int | None = None
    lr: float | None = None
    llm_mode: str = "?"  # none (no LLM forward) | frozen | lora | qlora
    minutes: float | None = None
    device: str = "cpu"
    trainable_parameters: int | None = None  # adapter + LoRA in this stage

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Stage:
        """A stage from one `stage_records` dict (as written into a card's `training` metadata)."""
        return cls(str(record.get("stage", "?")), str(record.get("run", "?")), _number(record.get("steps"), int),
                   _number(record.get("batch"), int), _number(record.get("lr"), float),
                   str(record.get("llm_mode", "?")), _number(record.get("minutes"), float),
                   str(record.get("device", "cpu")), _number(record.get("trainable_parameters"), int))


@dataclass
class Figures:
    """What a checkpoint was trained with and scored: its stages, oldest first, and its card metrics by label."""

    stages: list[Stage] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)  # card metric label -> value

    def __bool__(self) -> bool:
        return bool(self.stages or self.metrics)


@dataclass
class Records:
    """A checkpoint folder's structured records ({} for a file that is missing or not a JSON object)."""

    config: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def read(cls, folder: Path) -> Records:
        return cls(read_json(folder / "config.json"), read_json(folder / "eval.json"),
                   read_json(folder / "training.json"))

    @property
    def runs(self) -> dict[str, dict[str, Any]]:
        return self.training.get("runs") or {}

    @property
    def summaries(self) -> dict[str, dict[str, Any]]:
        return self.training.get("stages") or {}

    @property
    def run(self) -> dict[str, Any]:
        """The config of the run that was shipped (the newest one), {} when none is recorded."""
        return list(self.runs.values())[-1] if self.runs else {}

    def stage_records(self) -> list[dict[str, Any]]:
        """One dict per stage, oldest first (stage, run, steps, batch, lr, llm_mode, minutes, device,
        trainable_parameters): the card's `training` metadata."""
        records = []
        for name, summary in self.summaries.items():
            run = self.runs.get(name, {})
            stage = run.get("stage", summary.get("stage", name.split(" ")[0]))
            mode = "none" if stage == "align" else (run.get("caption") or {}).get("llm_mode", "frozen")
            seconds = summary.get("train_seconds")
            records.append({"stage": stage, "run": name.partition("(")[2].rstrip(")") or name,
                            "steps": summary.get("steps"), "batch": summary.get("batch_size"),
                            "lr": (run.get("train") or {}).get("lr"), "llm_mode": mode,
                            "minutes": round(seconds / 60, 1) if seconds is not None else None,
                            "device": summary.get("device", "cpu"),
                            "trainable_parameters": summary.get("trainable_parameters")})
        return records

    def metrics(self) -> dict[tuple[str, str], float]:
        """The card metrics eval.json holds, by (group, key), in CARD_METRICS order."""
        found = {}
        for group, key, _ in CARD_METRICS:
            value = _number((self.evaluation.get(group) or {}).get(key), float)
            if value is not None:
                found[group, key] = value
        return found

    def figures(self) -> Figures:
        return Figures([Stage.from_record(record) for record in self.stage_records()],
                       {LABELS[place]: value for place, value in self.metrics().items()})


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from `path`, {} when the file is missing, unreadable or not an object."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _number(value: Any, kind: type) -> Any:
    try:
        return kind(value) if value is not None and not isinstance(value, bool) else None
    except (TypeError, ValueError):
        return None
