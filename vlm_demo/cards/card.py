"""An adapter checkpoint folder's README.md model card, written and read with huggingface_hub's `ModelCard`: its
metadata (`ModelCardData`: base models, data sets, the held-out metrics as `EvalResult`s and the training record as
`training`) and its text are written from the folder's eval.json and training.json; reading gives the metadata's
figures back, the text people read and their notes. No figure is ever taken from the markdown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from vlm_demo.cards.body import DATA_WORDS, NOTES_END, NOTES_START, PhotoRow, body
from vlm_demo.cards.records import LABELS, Figures, Records, Stage
from vlm_demo.hub import HUB_ID

CARD = "README.md"


def card_data(run: dict[str, Any], evaluation: dict[str, Any], training: list[dict] | None = None) -> ModelCardData:
    """Hub metadata of the shipped run `run` (a training config as a dict): base models by hub id, hub data sets
    trained on, eval.json's card metrics as eval results and the training record (`training`: one dict per stage)."""
    from vlm_demo.encoders import ENCODERS
    from vlm_demo.llms import LLMS

    model, data = run.get("model") or {}, run.get("data") or {}
    llm, encoder = str(model.get("llm", "")), str(model.get("encoder", ""))
    bases = [spec.hub_id for spec in (LLMS.get(llm), ENCODERS.get(encoder)) if spec is not None and spec.hub_id]
    if llm not in LLMS and HUB_ID.match(llm) and not Path(llm).exists():
        bases.insert(0, llm)  # an LLM named by its hub id
    datasets = [d["name"].removeprefix("hub:") for d in data.get("train", []) if d["name"].startswith("hub:")]
    evaluated = str(data["eval"][0]["name"]) if data.get("eval") else "held-out"
    results = [EvalResult(task_type="image-to-text", dataset_type=evaluated.removeprefix("hub:"),
                          dataset_name=DATA_WORDS.get(evaluated, evaluated.removeprefix("hub:")), metric_type=key,
                          metric_name=LABELS[group, key], metric_value=round(value, 4))
               for (group, key), value in Records(evaluation=evaluation).metrics().items()]
    return ModelCardData(base_model=bases or None, datasets=datasets or None, library_name="vlm_demo",
                         license="apache-2.0", tags=["vision-language-adapter", "vlm_demo"],
                         pipeline_tag="image-to-text", model_name=f"{run.get('name', 'adapter')} adapter",
                         eval_results=results or None, training=training or None)


def render_card(records: Records, name: str, photos: list[PhotoRow] | None = None, notes: str = "") -> ModelCard:
    """The card of the checkpoint folder `name` from its records (the last run in training.json is the one shipped),
    with the held-out photos' captions and people's `notes`."""
    data = card_data(records.run, records.evaluation, records.stage_records())
    return ModelCard(f"---\n{data.to_yaml()}\n---\n{body(records, name, photos or [], notes)}")


def write_card(folder: Path, photos: list[PhotoRow] | None = None, name: str | None = None, notes: str = "") -> Path:
    """Write `folder`/README.md from the folder's eval.json and training.json; `name` is the folder it ships as
    (default: this folder's name)."""
    records = Records.read(folder)
    if not records.run or not records.evaluation:
        raise FileNotFoundError(f"{folder}: a card is written from eval.json and training.json (with its runs); "
                                "one is missing or empty")
    path = folder / CARD
    render_card(records, name or folder.name, photos, notes).save(path)
    return path


def read_card(folder: Path) -> ModelCard | None:
    """The folder's card, or None without one or with metadata that does not parse."""
    path = folder / CARD
    if not path.is_file():
        return None
    try:
        return ModelCard.load(path, ignore_metadata_errors=True)
    except (OSError, ValueError, yaml.YAMLError):
        return None


def card_figures(card: ModelCard | None) -> Figures:
    """The figures in a card's metadata: its eval results by card label and its `training` record (empty Figures,
    'no figures', for a card without them)."""
    if card is None:
        return Figures()
    known = set(LABELS.values())
    metrics = {str(result.metric_name): float(result.metric_value) for result in card.data.eval_results or []
               if result.metric_name in known and isinstance(result.metric_value, int | float)}
    stages = [Stage.from_record(record) for record in card.data.get("training") or [] if isinstance(record, dict)]
    return Figures(stages, metrics)


def read_figures(folder: Path) -> Figures:
    """A checkpoint folder's figures: from eval.json and training.json (every shipped folder has them), else from
    its card's metadata."""
    figures = Records.read(folder).figures()
    return figures if figures else card_figures(read_card(folder))


def card_text(folder: Path) -> str:
    """The card's markdown without its metadata ("" without a card)."""
    card = read_card(folder)
    if card is not None:
        return card.text.strip()
    path = folder / CARD
    return path.read_text(encoding="utf-8", errors="replace").strip() if path.is_file() else ""


def card_notes(folder: Path) -> str:
    """People's notes on the folder's card (between its notes markers), "" when it has none."""
    text = card_text(folder)
    start, end = text.find(NOTES_START), text.find(NOTES_END)
    return text[start + len(NOTES_START):end].strip() if 0 <= start < end else ""
