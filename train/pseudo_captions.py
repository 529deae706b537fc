"""Pseudo-captions from the encoder's own classifier, for images with no caption (drawings): what the head sees,
said in a sentence in everyday words from WordNet ("A brambling, a type of bird."), and only as specific as the head
is sure (its category, its broad kind, or a hedge between two classes when it is unsure of the class).
An encoder without an ImageNet head (DINOv2, CLIP) trains on the captions CAPTIONER's head writes, so every encoder
learns the same captions."""

from __future__ import annotations

import dataclasses
import logging
import random
from dataclasses import dataclass

import torch

from train.data import Sample
from train.data.openworld import HEAD_CAPTION
from train.data.wordnet import ClassWords, imagenet_words
from train.features import FeatureCache
from vlm_demo.adapters.label import IMAGENET_CLASSES
from vlm_demo.combos import COMBOS, DEFAULT_COMBO
from vlm_demo.encoders import ClassHead, EncoderOutput, VisionEncoder, build_encoder

log = logging.getLogger("train")

TEMPLATES = ["{Phrase}.", "This is {phrase}.", "The image shows {phrase}.", "A picture of {phrase}."]
CAPTIONER = COMBOS[DEFAULT_COMBO].encoder  # the default encoder: its head captions for encoders that have none


@dataclass(frozen=True)
class Confidence:
    """How sure the head must be to say each rung: the class itself (its top probability), its everyday category
    or broad kind (the probability summed over every class under it), or the top two classes as a hedge."""

    specific: float
    category: float
    broad: float
    hedge: float


# Chosen on the photos' dev split only (python -m train.head_calibration): the lowest thresholds at which what each
# rung says names the photo's object (the broad kind: its group) in at least 70% of the dev photos that reach it
# (27 photos: class with its category 19 of 27 from 0.10, broad kind 11 of 13 from 0.50, its floor, hedge 3 of 4 from
# 0.90; the everyday category reached 70% at no threshold, so it is never said alone).
CALIBRATED = Confidence(specific=0.1, category=1.01, broad=0.5, hedge=0.9)
MIN_CONFIDENCE = CALIBRATED.specific


def article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


PLURAL_NAMES = frozenset(("binoculars", "clogs", "jeans", "tights", "pajamas", "parallel bars", "sunglasses"))


def a(word: str) -> str:
    """The word with its indefinite article ("an apple"), none for ImageNet's plural names ("jeans")."""
    return word if word in PLURAL_NAMES else f"{article(word)} {word}"


def _says(name: str, category: str) -> bool:
    """Whether a class name already says its category as its last word ("tabby cat": cat; "minibus": not bus)."""
    return name.lower().replace("-", " ").split()[-1] == category.lower().split()[-1]


def class_phrase(index: int, names: tuple[str, ...], words: tuple[ClassWords, ...] | None) -> str:
    """What the head's class says in everyday words: "a brambling, a type of bird", "a person in a military
    uniform"; one phrase, never a list (captions shaped "a bird, a brambling" taught the LLM to list)."""
    specific = names[index]
    said = words[index] if words else None
    if said is None:
        return a(specific)
    if said.phrase:
        return said.phrase
    if said.person:
        return f"a person {said.person} {a(specific)}"
    if said.category and not _says(specific, said.category):
        return f"{a(specific)}, a type of {said.category}"
    return a(specific)


def _summed(probs: torch.Tensor, labels: list[str | None]) -> tuple[str | None, float]:
    totals: dict[str, float] = {}
    for label, prob in zip(labels, probs.tolist()):
        if label:
            totals[label] = totals.get(label, 0.0) + prob
    return max(totals.items(), key=lambda item: item[1], default=(None, 0.0))


def head_phrase(probs: torch.Tensor, names: tuple[str, ...], confidence: Confidence = CALIBRATED,
                words: tuple[ClassWords, ...] | None = None) -> tuple[str, str] | None:
    """(rung, phrase) the head is sure enough of: the class, else its everyday category, else its broad kind, else a
    hedge between the top two classes; None when it is sure of nothing. `words` defaults to WordNet's for the 1000
    ImageNet classes (none for another head)."""
    if words is None and len(names) == IMAGENET_CLASSES:
        words = imagenet_words()
    top = probs.topk(min(2, len(names)))
    best = int(top.indices[0])
    if float(top.values[0]) >= confidence.specific:
        return "specific", class_phrase(best, names, words)
    if words:
        category, mass = _summed(probs, [w.category for w in words])
        if category and mass >= confidence.category:
            return "category", a(category)
        broad, mass = _summed(probs, [w.broad for w in words])
        if broad and mass >= confidence.broad:
            return "broad", a(broad)
    if len(top.values) > 1 and float(top.values.sum()) >= confidence.hedge:
        second = int(top.indices[1])
        return "hedge", f"{a(names[best])} or {a(names[second])}"
    return None


def head_caption(probs: torch.Tensor, names: tuple[str, ...], rng: random.Random,
                 min_confidence: float | None = None, words: tuple[ClassWords, ...] | None = None) -> str | None:
    """A one-sentence caption of a class distribution [classes] (see head_phrase), or None when the head is unsure
    of everything; `min_confidence` overrides the calibrated threshold for naming the class itself."""
    confidence = CALIBRATED if min_confidence is None else dataclasses.replace(CALIBRATED, specific=min_confidence)
    said = head_phrase(probs, names, confidence, words)
    if said is None:
        return None
    phrase = said[1]
    return rng.choice(TEMPLATES).format(Phrase=phrase[:1].upper() + phrase[1:], phrase=phrase)


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
