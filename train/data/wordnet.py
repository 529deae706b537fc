"""Everyday words for ImageNet-1k classes from WordNet 3.0 (Debian's wordnet-base, read from its data.noun file):
each class's hypernym chain gives the everyday category a visitor knows (brambling -> finch -> ... -> bird), the
broad kind ("animal", "vehicle") an unsure caption can fall back on, and whether the class implies a person
(clothing, sports gear). Used at training time to write pseudo-captions; the app never reads WordNet."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

WORDNET_NOUNS = Path("/usr/share/wordnet/data.noun")  # Debian: wordnet-base (WordNet 3.0 licence, BSD-like)
IMAGENET_WNIDS = Path(__file__).with_name("imagenet_wnids.txt")  # class id -> synset id; source noted inside

# Everyday categories, nearest first on a class's hypernym chain wins; a synset matches by its first lemma.
EVERYDAY = frozenset("""
bird fish shark ray salamander frog turtle lizard snake spider scorpion crab lobster insect beetle butterfly ant bee
snail slug jellyfish coral starfish whale dolphin seal dog wolf fox bear big_cat cat monkey ape rabbit rodent squirrel
pig horse cattle sheep goat deer antelope elephant camel zebra bat
apple citrus berry fruit vegetable mushroom flower tree bread sandwich pizza cake dessert meat soup sauce beverage
car truck bus train boat ship aircraft airplane bicycle motorcycle tractor
building house church shop bridge tower
musical_instrument tool furniture chair table bed lamp clock computer telephone camera television
bag bottle cup dish knife ball toy weapon shoe hat uniform
""".split())
BROAD: dict[str, str] = {  # a synset's first lemma -> the broad kind it and everything under it belongs to
    "animal": "animal", "person": "person", "plant": "plant", "food": "food", "foodstuff": "food",
    "edible_fruit": "fruit", "vegetable": "vegetable", "beverage": "drink", "vehicle": "vehicle",
    "craft": "vehicle", "structure": "building", "fungus": "mushroom",
}  # no "device", "container" or "clothing": a caption saying only "a device" tells a visitor nothing
PERSON_IN = frozenset("clothing garment uniform headdress footwear protective_garment armor body_armor".split())
PERSON_WITH = frozenset(("sports_equipment", "ball"))
PHRASES: dict[str, str] = {"n03991062": "a plant in a pot"}  # flowerpot: what a photo of one shows


@dataclass(frozen=True)
class Synset:
    offset: str
    words: tuple[str, ...]
    hypernyms: tuple[str, ...]


def parse_line(line: str) -> Synset:
    """One data.noun line: `offset lex_filenum ss_type w_cnt (word lex_id)* p_cnt (symbol offset pos st)* | gloss`;
    w_cnt is hexadecimal; hypernyms are `@` and `@i` (instance) pointers."""
    fields = line.split(" | ", 1)[0].split()
    count = int(fields[3], 16)
    words = tuple(fields[4:4 + 2 * count:2])
    rest = fields[4 + 2 * count:]
    pointers = [rest[1 + 4 * i:5 + 4 * i] for i in range(int(rest[0]))]
    return Synset(fields[0], words, tuple(p[1] for p in pointers if p[0] in ("@", "@i") and p[2] == "n"))


class WordNet:
    """Noun synsets read on demand from a data.noun file (each line starts at its own byte offset)."""

    def __init__(self, path: Path = WORDNET_NOUNS):
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: install Debian's wordnet-base (make debs)")
        self.data = path.read_bytes()

    @cache  # noqa: B019 - one WordNet per process, kept for its life
    def synset(self, offset: str) -> Synset:
        start = int(offset)
        return parse_line(self.data[start:self.data.index(b"\n", start)].decode("utf-8"))

    def chain(self, offset: str) -> list[Synset]:
        """The synset and its hypernyms, nearest first (breadth-first over every parent, each once)."""
        seen, queue, order = {offset}, [offset], []
        while queue:
            synset = self.synset(queue.pop(0))
            order.append(synset)
            for parent in synset.hypernyms:
                if parent not in seen:
                    seen.add(parent)
                    queue.append(parent)
        return order


@dataclass(frozen=True)
class ClassWords:
    category: str | None  # the everyday category ("bird"), None when the chain has none
    broad: str | None  # the broad kind ("animal", "vehicle")
    person: str | None  # "in" (clothing, uniforms) or "with" (sports gear) when the class implies a person
    phrase: str | None  # a whole phrase that says the class better ("a plant in a pot")


def words_of(wordnet: WordNet, wnid: str) -> ClassWords:
    chain = wordnet.chain(wnid.removeprefix("n"))
    lemmas = [synset.words[0].lower() for synset in chain]
    category = next((lemma for lemma in lemmas[1:] if lemma in EVERYDAY), None)
    broad = next((BROAD[lemma] for lemma in lemmas if lemma in BROAD), None)
    person = "in" if PERSON_IN & set(lemmas) else "with" if PERSON_WITH & set(lemmas) else None
    return ClassWords(category and category.replace("_", " "), broad, person, PHRASES.get(wnid))


def imagenet_wnids(path: Path = IMAGENET_WNIDS) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


@cache
def imagenet_words() -> tuple[ClassWords, ...]:
    """Everyday words of the 1000 ImageNet-1k classes, in class order."""
    wordnet = WordNet()
    return tuple(words_of(wordnet, wnid) for wnid in imagenet_wnids())
