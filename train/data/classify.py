"""Real offline classification sets asked through the LLM: scikit-learn digits and the textile photos."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
from PIL import Image

from train.data.base import Sample

DIGIT_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
DIGITS_PROMPT = "What digit is this?"
TEXTILE_CLASSES = {"nominal": "a nominal textile with no defect", "local": "a textile with a local defect",
                   "global": "a textile with a global defect"}
TEXTILES_PROMPT = "Is this textile nominal, or does it have a local or a global defect?"


def _split_indices(count: int, split: str, seed: int = 0) -> list[int]:
    """80/10/10 split of a fixed shuffled order, so splits never share an image."""
    order = list(range(count))
    random.Random(seed).shuffle(order)
    bounds = {"train": (0, int(0.8 * count)), "val": (int(0.8 * count), int(0.9 * count)),
              "test": (int(0.9 * count), count)}
    start, end = bounds[split]
    return order[start:end]


def digits_samples(split: str, count: int | None = None) -> list[Sample]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    samples = []
    for index in _split_indices(len(digits.images), split)[:count]:
        pixels = digits.images[index]
        label = int(digits.target[index])

        def load(pixels=pixels) -> Image.Image:
            grey = Image.fromarray((255 - pixels * 255 / 16).astype(np.uint8), mode="L")  # dark ink on white
            return grey.resize((224, 224), Image.BILINEAR).convert("RGB")

        samples.append(Sample(f"digits-{index}", load, DIGITS_PROMPT, f"This is the digit {label}.", "classify",
                              qtype="digits", label=str(label), meta={"word": DIGIT_WORDS[label]}))
    return samples


def textiles_samples(split: str, count: int | None = None) -> list[Sample]:
    import conformal_clip_data

    root = conformal_clip_data.textile_simulated_root()
    files = [(name, path) for name in TEXTILE_CLASSES for path in sorted((Path(root) / name).glob("*.jpg"))]
    samples = []
    for index in _split_indices(len(files), split)[:count]:
        name, path = files[index]
        samples.append(Sample(f"textiles-{name}-{path.stem}", lambda path=path: Image.open(path).convert("RGB"),
                              TEXTILES_PROMPT, f"This is {TEXTILE_CLASSES[name]}.", "classify",
                              qtype="textiles", label=name))
    return samples
