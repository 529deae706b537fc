"""Calibrates how sure the encoder's head must be before a pseudo-caption names the class, its everyday category,
its broad kind or a hedge between two classes, on the everyday photos' dev split only (the test split stays unseen).
`python -m train.head_calibration` prints each rung's threshold and how often it is right on dev."""

from __future__ import annotations

import torch

from train.data import load_dataset
from train.data.wordnet import imagenet_words
from train.evaluate import names_object
from train.pseudo_captions import a, class_phrase

TARGET = 0.7  # a rung speaks from the lowest threshold at which it names the object in 70% of dev photos reaching it
MIN_PHOTOS = 3
GRID = [round(0.05 * step, 2) for step in range(2, 20)]
# A category or broad kind is said alone only when it holds most of the head's probability: the training drawings put
# 10-30% on "animal" for stars, flags and patterns, and a caption model taught "an animal" for those says it anywhere.
FALLBACK_FLOOR = {"category": 0.5, "broad": 0.5}
GROUP_OF = {"animal": "animal", "person": "person", "clothing": "person", "plant": "plant", "mushroom": "plant",
            "food": "food", "fruit": "food", "vegetable": "food", "drink": "food", "vehicle": "vehicle",
            "building": "building"}


def rung_scores(probs: torch.Tensor, names: tuple[str, ...], keywords: list[str], group: str) -> dict:
    """Per rung: (the head's confidence in it, whether what it says names the photo's object)."""
    words = imagenet_words()
    top = probs.topk(2)
    best, second = int(top.indices[0]), int(top.indices[1])
    scores = {"specific": (float(top.values[0]), names_object(class_phrase(best, names, words), keywords)),
              "hedge": (float(top.values.sum()),
                        names_object(f"{a(names[best])} or {a(names[second])}", keywords))}
    for rung in ("category", "broad"):
        totals: dict[str, float] = {}
        for said, prob in zip(words, probs.tolist()):
            label = getattr(said, rung)
            if label:
                totals[label] = totals.get(label, 0.0) + prob
        label, mass = max(totals.items(), key=lambda item: item[1])
        right = names_object(a(label), keywords) if rung == "category" else GROUP_OF.get(label) == group
        scores[rung] = (mass, right)
    return scores


def threshold(pairs: list[tuple[float, bool]], floor: float = 0.0) -> tuple[float, int, int]:
    """(lowest grid threshold from `floor` whose reached photos are right at least TARGET of the time, right,
    reached); 1.01 (never speak) when no threshold qualifies."""
    for value in (value for value in GRID if value >= floor):
        reached = [right for confidence, right in pairs if confidence >= value]
        if len(reached) >= MIN_PHOTOS and sum(reached) / len(reached) >= TARGET:
            return value, sum(reached), len(reached)
    return 1.01, 0, 0


def calibrate(split: str = "dev") -> dict[str, tuple[float, int, int]]:
    from vlm_demo.encoders import build_encoder

    encoder = build_encoder("efficientnet-lite0")
    samples = load_dataset("photos", split)
    with torch.inference_mode():
        probs = encoder.class_head.logits(encoder([s.load_image() for s in samples]).pooled).softmax(dim=-1)
    rows = [rung_scores(row, encoder.class_head.names, s.meta["keywords"], s.meta["group"])
            for row, s in zip(probs, samples)]
    return {rung: threshold([row[rung] for row in rows], FALLBACK_FLOOR.get(rung, 0.0))
            for rung in ("specific", "category", "broad", "hedge")}


if __name__ == "__main__":
    for rung, (value, right, reached) in calibrate().items():
        print(f"{rung}: threshold {value} (right in {right} of {reached} dev photos reaching it)")
