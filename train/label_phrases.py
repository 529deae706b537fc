"""Writes vlm_demo/adapters/imagenet_everyday.txt: each ImageNet-1k class in everyday words, as the pseudo-captions say
it ("Granny Smith, a type of apple", "person in a military uniform"), from Debian's WordNet (train/data/wordnet.py).
The label tokens can start from these phrases instead of the bare class names (`everyday_names`), so a class the
training images never showed still carries its category. `python -m train.label_phrases` writes it again."""

from __future__ import annotations

import sys

from train.data.wordnet import imagenet_words
from train.pseudo_captions import CAPTIONER, class_phrase
from vlm_demo.adapters.label import EVERYDAY_NAMES

HEADER = "# ImageNet-1k classes (class order) in everyday words from WordNet; written by python -m train.label_phrases"


def everyday_phrases(names: tuple[str, ...]) -> list[str]:
    """The pseudo-captions' phrase of each class, without its leading article."""
    words = imagenet_words()
    phrases = [class_phrase(index, names, words) for index in range(len(names))]
    return [phrase.split(" ", 1)[1] if phrase.split(" ", 1)[0] in ("a", "an") else phrase for phrase in phrases]


def main() -> int:
    from vlm_demo.encoders import build_encoder

    names = build_encoder(CAPTIONER).class_head.names
    EVERYDAY_NAMES.write_text("\n".join([HEADER, *everyday_phrases(names)]) + "\n")
    print(f"wrote {EVERYDAY_NAMES} ({len(names)} classes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
