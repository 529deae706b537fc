"""One training/evaluation record: an image, a prompt and its target text, plus what evaluation needs."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from PIL import Image


@dataclass
class Sample:
    image_id: str  # unique per distinct image within a dataset
    load_image: Callable[[], Image.Image]
    prompt: str
    target: str
    task: str  # "caption" | "vqa" | "classify"
    qtype: str = ""  # VQA question type or classification dataset name
    label: str = ""  # class name / short answer that must appear in the answer
    references: list[str] = field(default_factory=list)  # all reference captions of the image
    meta: dict[str, Any] = field(default_factory=dict)  # e.g. the shapes' objects


def image_digest(image: Image.Image) -> str:
    """Content hash of decoded pixels: the feature cache key changes whenever the image does."""
    digest = hashlib.sha1(f"{image.mode}{image.size}".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()
