"""WordNet words for classifier classes, on a few-line fake data.noun in WordNet's format (not the real database)."""

from __future__ import annotations

import random

import pytest
import torch

from train.data.wordnet import WordNet, parse_line, words_of
from train.pseudo_captions import Confidence, a, class_phrase, head_caption, head_phrase

LINES = {  # word: the rest of its line (lex_filenum ss_type w_cnt (word lex_id)* p_cnt pointers | gloss)
    "animal": "03 n 01 animal 0 000 | a living organism",
    "bird": "05 n 01 bird 0 001 @ {animal} n 0000 | a warm-blooded egg-laying vertebrate",
    "brambling": "05 n 02 brambling 0 Fringilla_montifringilla 0 002 @ {finch} n 0000 #m {bird} n 0000 | a finch",
    "finch": "05 n 01 finch 0 001 @ {bird} n 0000 | a small songbird",
    "covering": "06 n 01 covering 0 000 | an artifact that covers something",
    "clothing": "06 n 01 clothing 0 001 @ {covering} n 0000 | a covering designed to be worn",
    "military_uniform": "06 n 01 military_uniform 0 002 @ {uniform} n 0000 ~ {bird} n 0000 | a uniform",
    "uniform": "06 n 01 uniform 0 001 @ {clothing} n 0000 | clothing of distinctive design",
    "goldfinch": "05 n 01 goldfinch 0 001 @ {finch} n 0000 | a finch",
    "bus": "06 n 01 bus 0 000 | a vehicle carrying many passengers",
    "minibus": "06 n 01 minibus 0 001 @ {bus} n 0000 | a light bus",
}


def fake_wordnet(tmp_path) -> tuple[WordNet, dict[str, str]]:
    """A data.noun whose offsets are the byte offsets of its lines, as WordNet's are (8 digits, so the lengths do
    not depend on the values)."""
    blank = {word: "00000000" for word in LINES}
    offsets, position = {}, 0
    for word, rest in LINES.items():
        offsets[word] = f"{position:08d}"
        position += len(f"00000000 {rest.format(**blank)}\n")
    path = tmp_path / "data.noun"
    path.write_text("".join(f"{offsets[word]} {rest.format(**offsets)}\n" for word, rest in LINES.items()))
    return WordNet(path), offsets


def test_a_data_line_gives_its_words_and_hypernyms_only():
    synset = parse_line("03991062 06 n 02 pot 4 flowerpot 0 003 @ 03094503 n 0000 + 01529509 v 0101 "
                        "~ 03957315 n 0000 | a container in which plants are cultivated  ")
    assert synset.words == ("pot", "flowerpot") and synset.hypernyms == ("03094503",)
    assert parse_line("00000010 05 n 0a " + "w 0 " * 10 + "000 | ten words").words == ("w",) * 10


def test_everyday_category_broad_kind_and_person_come_from_the_hypernym_chain(tmp_path):
    wordnet, offsets = fake_wordnet(tmp_path)
    brambling = words_of(wordnet, "n" + offsets["brambling"])
    assert (brambling.category, brambling.broad, brambling.person) == ("bird", "animal", None)
    uniform = words_of(wordnet, "n" + offsets["military_uniform"])
    assert uniform.person == "in" and uniform.broad is None  # "clothing" alone tells a visitor nothing
    assert [s.words[0] for s in wordnet.chain(offsets["brambling"])] == ["brambling", "finch", "bird", "animal"]


def test_captions_say_the_class_then_its_category_and_only_what_the_head_is_sure_of(tmp_path):
    wordnet, offsets = fake_wordnet(tmp_path)
    names = ("brambling", "military uniform", "goldfinch")
    words = tuple(words_of(wordnet, "n" + offsets[key]) for key in ("brambling", "military_uniform", "goldfinch"))
    assert class_phrase(0, names, words) == "a brambling, a type of bird"
    assert class_phrase(1, names, words) == "a person in a military uniform"
    sure = Confidence(specific=0.6, category=0.7, broad=0.8, hedge=0.5)
    assert head_phrase(torch.tensor([0.9, 0.05, 0.05]), names, sure, words) == (
        "specific", "a brambling, a type of bird")
    assert head_phrase(torch.tensor([0.4, 0.2, 0.4]), names, sure, words) == ("category", "a bird")
    unsure = Confidence(specific=0.6, category=0.9, broad=0.95, hedge=0.5)
    assert head_phrase(torch.tensor([0.4, 0.2, 0.4]), names, unsure, words) == ("hedge", "a brambling or a goldfinch")
    assert head_phrase(torch.tensor([0.45, 0.1, 0.45]), names, Confidence(0.6, 0.7, 0.95, 1.0), words) == (
        "category", "a bird")
    assert head_phrase(torch.tensor([0.3, 0.4, 0.3]), names, Confidence(0.6, 0.7, 0.95, 0.9), words) is None
    caption = head_caption(torch.tensor([0.9, 0.05, 0.05]), names, random.Random(1), words=words)
    assert caption.endswith("a brambling, a type of bird.") or caption == "A brambling, a type of bird."


def test_a_class_name_that_ends_in_its_category_says_it_once(tmp_path):
    wordnet, offsets = fake_wordnet(tmp_path)
    minibus = (words_of(wordnet, "n" + offsets["minibus"]),) * 2
    assert class_phrase(0, ("minibus", "school bus"), minibus) == "a minibus, a type of bus"
    assert class_phrase(1, ("minibus", "school bus"), minibus) == "a school bus"


def test_plural_class_names_take_no_article():
    assert (a("apple"), a("jeans")) == ("an apple", "jeans")


def test_the_packaged_everyday_names_are_the_pseudo_captions_phrases_from_wordnet():
    from train.data.wordnet import WORDNET_NOUNS
    from train.label_phrases import everyday_phrases
    from vlm_demo.adapters.label import everyday_names
    from vlm_demo.encoders import build_encoder

    if not WORDNET_NOUNS.is_file():
        pytest.skip("wordnet-base is not installed (Debian package; `make debs` installs it)")
    names = build_encoder("efficientnet-lite0").class_head.names
    assert everyday_names() == tuple(everyday_phrases(names))  # `python -m train.label_phrases` writes it again
    assert everyday_names()[948] == "Granny Smith, a type of apple"

