"""Synthetic shapes, deterministic by seed: 1-4 coloured objects, varied captions, VQA pairs and labels."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from PIL import Image, ImageDraw

from train.data.base import Sample

COLOURS = {
    "red": (220, 30, 30), "green": (30, 170, 50), "blue": (35, 70, 220), "yellow": (245, 215, 30),
    "orange": (245, 140, 20), "purple": (140, 40, 180), "white": (250, 250, 250), "black": (15, 15, 15),
}
SHAPES = ["circle", "square", "triangle", "star", "diamond"]
SIZES = {"small": 0.09, "large": 0.15}  # radius as a fraction of the image side
BACKGROUNDS = {"grey": (128, 128, 128), "beige": (225, 210, 180), "light blue": (190, 215, 240),
               "dark": (45, 45, 55), "pale green": (200, 230, 200)}
ROWS, COLUMNS = ["top", "middle", "bottom"], ["left", "centre", "right"]
NUMBERS = ["zero", "one", "two", "three", "four"]
SPLIT_SEEDS = {"train": 0, "val": 10_000_000, "test": 20_000_000}  # disjoint seed ranges: no shared image


@dataclass
class ShapeObject:
    colour: str
    shape: str
    size: str
    row: int
    column: int

    @property
    def position(self) -> str:
        if (self.row, self.column) == (1, 1):
            return "centre"
        if self.row == 1:
            return self.column_word
        if self.column == 1:
            return ROWS[self.row]
        return f"{ROWS[self.row]} {self.column_word}"

    @property
    def column_word(self) -> str:
        return COLUMNS[self.column]

    @property
    def phrase(self) -> str:
        return f"{self.size} {self.colour} {self.shape}"

    def as_dict(self) -> dict:
        return {"colour": self.colour, "shape": self.shape, "size": self.size, "position": self.position}


def _polygon(shape: str, cx: float, cy: float, r: float, turn: float) -> list[tuple[float, float]]:
    if shape == "square":
        corners = [(k * math.pi / 2 + math.pi / 4 + turn) for k in range(4)]
        return [(cx + r * math.cos(a), cy + r * math.sin(a)) for a in corners]
    if shape == "triangle":
        return [(cx + r * math.cos(a), cy + r * math.sin(a)) for a in
                [-math.pi / 2 + turn + k * 2 * math.pi / 3 for k in range(3)]]
    if shape == "diamond":
        return [(cx, cy - r), (cx + 0.65 * r, cy), (cx, cy + r), (cx - 0.65 * r, cy)]
    points = []  # star
    for k in range(10):
        radius = r if k % 2 == 0 else 0.45 * r
        angle = -math.pi / 2 + k * math.pi / 5
        points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
    return points


def render(objects: list[ShapeObject], background: str, textured: bool, rng: random.Random,
           size: int = 224) -> Image.Image:
    base = BACKGROUNDS[background]
    image = Image.new("RGB", (size, size), base)
    draw = ImageDraw.Draw(image)
    if textured:  # faint stripes or speckle, so the background is not always flat
        step = rng.choice([6, 9, 12])
        shade = tuple(max(0, min(255, c + rng.choice([-18, 18]))) for c in base)
        for offset in range(-size, size, step):
            draw.line([(offset, 0), (offset + size, size)], fill=shade, width=2)
    cell = size / 3
    for obj in objects:
        r = SIZES[obj.size] * size * rng.uniform(0.9, 1.1)
        cx = (obj.column + 0.5) * cell + rng.uniform(-0.08, 0.08) * cell
        cy = (obj.row + 0.5) * cell + rng.uniform(-0.08, 0.08) * cell
        fill = tuple(max(0, min(255, c + rng.randint(-12, 12))) for c in COLOURS[obj.colour])
        if obj.shape == "circle":
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
        else:
            draw.polygon(_polygon(obj.shape, cx, cy, r, rng.uniform(-0.15, 0.15)), fill=fill)
    return image


def _describe_list(objects: list[ShapeObject]) -> str:
    phrases = [f"a {o.colour} {o.shape}" for o in objects]
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]


def captions(objects: list[ShapeObject], background: str) -> list[str]:
    """Several wordings of the same content; the first is the canonical one."""
    n = len(objects)
    if n == 1:
        o = objects[0]
        return [
            f"A {o.colour} {o.shape} on a {background} background.",
            f"A {o.phrase} in the {o.position} of the image.",
            f"There is one {o.colour} {o.shape} on a {background} background.",
            f"The image shows a {o.colour} {o.shape}.",
        ]
    listing = _describe_list(objects)
    return [
        f"{NUMBERS[n].capitalize()} shapes: {listing}.",
        f"There are {NUMBERS[n]} shapes on a {background} background: {listing}.",
        f"The image shows {listing}.",
        f"{listing[0].upper()}{listing[1:]} on a {background} background.",
    ]


KIND_QUESTION = "What colour and shape is the object?"  # a single object's class: 8 colours x 5 shapes


def questions(objects: list[ShapeObject], types: list[str] | None = None) -> list[tuple[str, str, str]]:
    """(question type, question, short answer) pairs that have exactly one right answer: count, colour, shape and
    position by default; only `types` when given, which may include "kind" (a single object's colour and shape, a
    40-way classification)."""
    if types is not None:
        kind = [("kind", KIND_QUESTION, f"{objects[0].colour} {objects[0].shape}")] if len(objects) == 1 else []
        return [pair for pair in questions(objects) + kind if pair[0] in types]
    pairs = [("count", "How many shapes are in the image?", NUMBERS[len(objects)])]
    by_shape = {o.shape: [p for p in objects if p.shape == o.shape] for o in objects}
    by_colour = {o.colour: [p for p in objects if p.colour == o.colour] for o in objects}
    for o in objects:
        if len(by_shape[o.shape]) == 1:
            pairs.append(("colour", f"What colour is the {o.shape}?", o.colour))
        if len(by_colour[o.colour]) == 1:
            pairs.append(("shape", f"What shape is the {o.colour} object?", o.shape))
            pairs.append(("position", f"Where is the {o.colour} {o.shape}?", o.position))
    return pairs


def make_scene(seed: int, max_objects: int = 4) -> tuple[list[ShapeObject], str, bool, random.Random]:
    rng = random.Random(seed)
    count = rng.choices(range(1, max_objects + 1), weights=[4, 3, 2, 1][:max_objects])[0]
    cells = rng.sample([(r, c) for r in range(3) for c in range(3)], count)
    background = rng.choice(list(BACKGROUNDS))
    allowed = [c for c in COLOURS if not (background == "dark" and c == "black")]
    objects = [ShapeObject(rng.choice(allowed), rng.choice(SHAPES), rng.choice(list(SIZES)), r, c) for r, c in cells]
    return objects, background, rng.random() < 0.3, rng


def shapes_samples(split: str, count: int, vqa_per_image: int = 1, max_objects: int = 4,
                   question_types: list[str] | None = None, with_captions: bool = True) -> list[Sample]:
    """`count` images of one split: a caption sample each (a random wording; none without `with_captions`) plus
    `vqa_per_image` VQA samples (of `question_types` only, when given)."""
    samples = []
    for index in range(count):
        seed = SPLIT_SEEDS[split] + index
        objects, background, textured, rng = make_scene(seed, max_objects)

        def load(objects=objects, background=background, textured=textured, seed=seed) -> Image.Image:
            return render(objects, background, textured, random.Random(seed + 1))

        references = captions(objects, background)
        meta = {"objects": [o.as_dict() for o in objects], "background": background}
        image_id = f"shapes-{split}-{index}"
        label = f"{objects[0].colour} {objects[0].shape}" if len(objects) == 1 else ""
        caption = Sample(image_id, load, "Describe this image.", rng.choice(references), "caption",
                         qtype="shapes", label=label, references=references, meta=meta)
        samples.extend([caption] if with_captions else [])
        asked = questions(objects, question_types)
        for qtype, question, answer in rng.sample(asked, min(vqa_per_image, len(asked))):
            samples.append(Sample(image_id, load, question, f"{answer[0].upper()}{answer[1:]}.", "vqa",
                                  qtype=qtype, label=answer, meta=meta))
    return samples
