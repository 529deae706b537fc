"""Dataset registry: name -> function(split, count) returning Samples."""

from __future__ import annotations

from collections.abc import Callable

from train.data.base import Sample, image_digest
from train.data.classify import digits_samples, textiles_samples
from train.data.formats import caption_samples
from train.data.openworld import clipart_samples, emoji_samples, photos_samples
from train.data.shapes import shapes_samples

__all__ = ["DATASETS", "Sample", "caption_samples", "image_digest", "load_dataset"]

DATASETS: dict[str, Callable[..., list[Sample]]] = {
    "shapes": shapes_samples,
    "digits": digits_samples,
    "textiles": textiles_samples,
    "photos": photos_samples,
    "emoji": emoji_samples,
    "clipart": clipart_samples,
}


def load_dataset(name: str, split: str, count: int | None = None, **options) -> list[Sample]:
    """A registered dataset, a caption data set by hub id (`hub:owner/name`), or a user caption file/folder given by
    path (`split` picks nothing then)."""
    if name.startswith("hub:"):
        from train.data.hub import hub_caption_samples

        return hub_caption_samples(name, split, count, **options)
    if name in DATASETS:
        if name == "shapes":
            return DATASETS[name](split, count or 100, **options)
        return DATASETS[name](split, count, **options)
    samples, _ = caption_samples(name, **options)
    return samples[:count] if count else samples
