"""Pseudo-captions from the encoder's own classifier, for images with no caption (drawings): what the head sees,
said in a sentence, with the everyday word for groups of fine-grained ImageNet classes (120 dog breeds are a dog).
An encoder without an ImageNet head (DINOv2, CLIP) trains on the captions CAPTIONER's head writes, so every encoder
learns the same captions."""

from __future__ import annotations

import dataclasses
import logging
import random

import torch

from train.data import Sample
from train.data.openworld import HEAD_CAPTION
from train.features import FeatureCache
from vlm_demo.adapters.label import IMAGENET_CLASSES
from vlm_demo.encoders import ClassHead, EncoderOutput, VisionEncoder, build_encoder

log = logging.getLogger("train")

_BIRDS = [*range(7, 25), *range(80, 101), *range(127, 147)]
GROUPS: dict[str, list[int]] = {  # everyday word -> ImageNet-1k class ids
    "bird": _BIRDS,
    "fish": [0, 1, 5, 6, *range(389, 398)],
    "shark": [2, 3, 4],
    "salamander": [*range(25, 30)],
    "frog": [30, 31, 32],
    "turtle": [*range(33, 38)],
    "lizard": [*range(38, 49)],
    "crocodile": [49, 50],
    "snake": [*range(52, 69)],
    "spider": [*range(72, 78)],
    "crab": [118, 119, 120, 121, 125],
    "whale": [147, 148],
    "dog": [*range(151, 269)],
    "wolf": [269, 270, 271],
    "fox": [277, 278, 279, 280],
    "cat": [*range(281, 286)],
    "bear": [*range(294, 298)],
    "beetle": [300, *range(302, 308)],
    "butterfly": [*range(321, 327)],
    "rabbit": [330, 331, 332],
    "monkey": [*range(369, 383)],
    "elephant": [101, 385, 386],
    "car": [436, 511, 609, 627, 656, 661, 751, 817],
}
TEMPLATES = ["{A} {name}.", "This is {a} {name}.", "The image shows {a} {name}.", "A picture of {a} {name}."]
MIN_CONFIDENCE = 0.25  # below this the head is guessing: no pseudo-caption
CAPTIONER = "efficientnet-lite0"  # the default encoder: its head captions for encoders that have none


def article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def head_caption(probs: torch.Tensor, names: tuple[str, ...], rng: random.Random,
                 min_confidence: float = MIN_CONFIDENCE) -> str | None:
    """A one-sentence caption of a class distribution [classes], or None when no group or class reaches
    `min_confidence`. A group wins with its summed probability and is named with its most likely member."""
    groups = GROUPS if len(names) == IMAGENET_CLASSES else {}  # the groups are ImageNet-1k class ids
    best_id = int(probs.argmax())
    best_prob = float(probs[best_id])
    group_word = None
    for word, members in groups.items():
        total = float(probs[members].sum())
        if total > best_prob:
            best_prob, group_word = total, word
            best_id = members[int(probs[members].argmax())]
    if best_prob < min_confidence:
        return None
    specific = names[best_id]
    if group_word is None:
        group_word = next((word for word, members in groups.items() if best_id in members), None)
    if group_word is None or specific.lower().endswith(group_word):
        name = specific
    else:
        name = f"{group_word}, {article(specific)} {specific}"
    template = rng.choice(TEMPLATES)
    a = article(name)
    return template.format(A=a.capitalize(), a=a, name=name)


def captioning_head(samples: list[Sample], encoder: VisionEncoder, features: EncoderOutput, rows: dict[str, int],
                    precision: str = "fp32", progress: bool = False
                    ) -> tuple[ClassHead | None, EncoderOutput, dict[str, int]]:
    """The head that writes the samples' pseudo-captions and the features it reads: `encoder`'s own, or for an
    encoder without one CAPTIONER's, on CAPTIONER's (cached) features of the images that need a caption."""
    wanted = [s for s in samples if s.meta.get("caption_from") == HEAD_CAPTION]
    if encoder.class_head is not None or not wanted:
        return encoder.class_head, features, rows
    captioner = build_encoder(CAPTIONER)
    log.info("%s has no ImageNet head: %d drawings are captioned by %s's", encoder.name, len(wanted), CAPTIONER)
    own, own_rows = FeatureCache(captioner, precision=precision).features(wanted, progress=progress)
    return captioner.class_head, own, own_rows


def write_head_captions(samples: list[Sample], features: EncoderOutput, rows: dict[str, int], head: ClassHead | None,
                        seed: int = 0) -> list[Sample]:
    """Samples whose meta asks for it get a caption from `head`; those the head is unsure of are dropped."""
    wanted = [s for s in samples if s.meta.get("caption_from") == HEAD_CAPTION]
    if not wanted:
        return samples
    if head is None:
        raise ValueError("these training images are captioned by the encoder's own classifier, which this encoder "
                         "does not have; pick an encoder with an ImageNet head (efficientnet-lite0)")
    index = torch.tensor([rows[s.image_id] for s in wanted])
    with torch.no_grad():
        probs = head.logits(features.pooled[index]).softmax(dim=-1).cpu()
    rng = random.Random(seed)
    written = {}
    for sample, row in zip(wanted, probs):
        caption = head_caption(row, head.names, rng)
        if caption is not None:
            written[sample.image_id] = dataclasses.replace(sample, target=caption, references=[caption])
    log.info("pseudo-captions from the encoder's head: %d of %d images (%d below confidence %.2f dropped)",
             len(written), len(wanted), len(wanted) - len(written), MIN_CONFIDENCE)
    return [written.get(s.image_id, s) for s in samples
            if s.meta.get("caption_from") != HEAD_CAPTION or s.image_id in written]
