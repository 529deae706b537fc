"""Model cards of adapter checkpoint folders, written and read in one place: the figures come from each folder's
eval.json and training.json (records.py); the README.md card carries them as huggingface_hub `ModelCard` metadata
(card.py) above the text people read (body.py). `python -m train.card FOLDER` (or `--all`) rewrites cards."""

from vlm_demo.cards.body import NOTES_END, NOTES_START, PhotoRow, family_recipe
from vlm_demo.cards.card import (
    card_data,
    card_figures,
    card_notes,
    card_text,
    read_card,
    read_figures,
    render_card,
    write_card,
)
from vlm_demo.cards.records import CARD_METRICS, LABELS, Figures, Records, Stage, read_json

__all__ = ["CARD_METRICS", "LABELS", "NOTES_END", "NOTES_START", "Figures", "PhotoRow", "Records", "Stage", "card_data",
           "card_figures", "card_notes", "card_text", "family_recipe", "read_card", "read_figures", "read_json",
           "render_card", "write_card"]
