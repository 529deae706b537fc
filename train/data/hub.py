"""Caption data sets named by hub id (`hub:owner/name`) or a local folder in the same layout, through `datasets`
(imported only here, only when such a data set is named)."""

from __future__ import annotations

import logging
from typing import Any

from train.data.base import Sample
from train.data.formats import CAPTION_PROMPT

log = logging.getLogger("train.data")
PREFIX = "hub:"
CAPTION_COLUMNS = ("caption", "captions", "text", "sentences", "sentence", "answer")  # tried in this order
TEST_SPLITS = ("test", "validation", "val", "dev")  # what our "test" split maps to, first present wins


def _captions(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value.strip()] if value.strip() else []
    if isinstance(value, dict):  # e.g. {"raw": "..."} sentence records
        value = value.get("raw") or value.get("text") or ""
        return _captions(value)
    if isinstance(value, (list, tuple)):
        return [caption for item in value for caption in _captions(item)]
    return []


def caption_columns(columns: list[str], wanted: str | list[str] | None) -> list[str]:
    """The columns holding captions: those named, else the first usual name, else every `caption_<i>` column."""
    if wanted:
        names = [wanted] if isinstance(wanted, str) else list(wanted)
        missing = [name for name in names if name not in columns]
        if missing:
            raise ValueError(f"caption column(s) {missing} not in the data set; it has {columns}")
        return names
    for name in CAPTION_COLUMNS:
        if name in columns:
            return [name]
    numbered = sorted(name for name in columns if name.startswith("caption_"))
    if numbered:
        return numbered
    raise ValueError(f"no caption column found among {columns}; name it with caption_column=...")


def pick_split(available: list[str], split: str, asked: str | None) -> str:
    if asked:
        if asked not in available:
            raise ValueError(f"split '{asked}' not in the data set; it has {available}")
        return asked
    candidates = (split,) if split == "train" else TEST_SPLITS
    found = next((name for name in candidates if name in available), None)
    if found is None:
        raise ValueError(f"no '{split}' split among {available}; name one with split=...")
    return found


def hub_caption_samples(name: str, split: str, count: int | None = None, image_column: str = "image",
                        caption_column: str | list[str] | None = None, revision: str | None = None,
                        prompt: str = CAPTION_PROMPT, **options: Any) -> list[Sample]:
    """One sample per caption of the first `count` images of a split (`hub:owner/name`, or `hub:/a/local/folder`
    holding the same parquet/imagefolder layout). Needs `pip install datasets`."""
    try:
        import datasets
    except ImportError:
        raise ValueError(f"{name}: hub data sets need the `datasets` package (pip install datasets)") from None
    source, asked = name.removeprefix(PREFIX), options.pop("split", None)
    available = datasets.get_dataset_split_names(source, revision=revision, **options)
    chosen = pick_split(available, split, asked)
    rows = datasets.load_dataset(source, split=chosen, revision=revision, **options)
    if image_column not in rows.column_names:
        raise ValueError(f"{name}: no image column '{image_column}' (columns: {rows.column_names}); name it with "
                         "image_column=...")
    columns = caption_columns(rows.column_names, caption_column)
    if count:
        rows = rows.select(range(min(count, len(rows))))
    texts = rows.select_columns(columns)
    samples: list[Sample] = []
    for index, record in enumerate(texts):
        references = [caption for column in columns for caption in _captions(record[column])]

        def load_image(index: int = index):
            return rows[index][image_column].convert("RGB")

        image_id = f"hub-{source}-{chosen}-{index}"
        samples.extend(Sample(image_id, load_image, prompt, caption, "caption", qtype=source, references=references)
                       for caption in references)
    log.info("%s (%s): %d samples from %d images", source, chosen, len(samples), len(texts))
    return samples
