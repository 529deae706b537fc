"""Open world: the encoder's ImageNet head, the photo evaluation set and its metric, drawings with pseudo-captions."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image

from train.data import load_dataset
from train.data.openworld import CLIPART_ROOT, EMOJI_FONT, HEAD_CAPTION, PHOTOS, place
from train.evaluate import compute_metrics, names_object
from train.pseudo_captions import CAPTIONER, captioning_head, head_caption, write_head_captions
from vlm_demo.encoders import ClassHead, EncoderOutput, build_encoder


@pytest.fixture(scope="module")
def photos():
    return load_dataset("photos", "dev")


def test_the_packaged_encoder_runs_relu6_and_its_head_recognises_photos(photos):
    right = {"photos-cheetah_face": "cheetah", "photos-lion": "lion", "photos-coffee": "espresso"}
    chosen = [s for s in photos if s.image_id in right]
    fixed, legacy = build_encoder("efficientnet-lite0"), build_encoder("efficientnet-lite0-swish")
    head = fixed.class_head
    top = head.logits(fixed([s.load_image() for s in chosen]).pooled).argmax(dim=-1).tolist()
    assert [head.names[i] for i in top] == [right[s.image_id] for s in chosen]
    assert legacy.class_head is None and legacy.preprocessing_id != fixed.preprocessing_id
    assert legacy([chosen[0].load_image()]).tokens.shape == (1, 49, 1280)


def test_photo_set_is_for_evaluation_with_keywords_for_every_image(photos):
    assert 15 <= len(photos) < len(PHOTOS) and {s.image_id for s in photos} >= {"photos-chelsea", "photos-lion"}
    assert all(s.task == "name" and s.meta["keywords"] and s.load_image().size[0] >= 200 for s in photos)
    with pytest.raises(ValueError, match="evaluation set"):
        load_dataset("photos", "train")


def test_a_caption_names_the_object_by_a_word_a_plural_or_a_phrase():
    assert names_object("A tabby cat sits on a mat.", ["cat"])
    assert names_object("Two cheetahs run.", ["cheetah"])
    assert names_object("The space shuttle lifts off.", ["space shuttle"])
    assert not names_object("A category of things.", ["cat"])
    assert not names_object("Shuttle buses in space.", ["space shuttle"])


def test_photo_score_counts_named_objects(photos):
    answers = ["A cat." if s.image_id == "photos-chelsea" else "Three shapes." for s in photos]
    metrics = compute_metrics(photos, answers)
    assert metrics["photos_object_named"] == {"score": 1 / len(photos), "count": len(photos)}


def test_head_captions_without_wordnet_words_name_the_class_only_when_sure():
    names = tuple(f"class {i}" for i in range(10))
    sure = torch.zeros(10)
    sure[3] = 0.9
    assert head_caption(sure, names, random.Random(0), words=()) in {
        "Class 3.", "This is a class 3.", "The image shows a class 3.", "A picture of a class 3."}
    assert head_caption(torch.full((10,), 0.1), names, random.Random(0), min_confidence=0.5, words=()) is None


def test_drawings_get_pseudo_captions_from_the_head_and_unsure_ones_are_dropped():
    drawings = [s for name in ("emoji", "clipart") for s in _drawings_or_skip(name)]
    rows = {s.image_id: i for i, s in enumerate(drawings)}
    pooled = torch.zeros(len(drawings), 16)
    pooled[0, 0] = 10.0  # only the first image is confidently class 0; the others are uniform over 16 classes
    head = ClassHead(torch.eye(16), torch.zeros(16), ("tabby cat", "lion", "cup", "moped", *"abcdefghijkl"))
    features = EncoderOutput(torch.zeros(len(drawings), 1, 16), pooled)
    kept = write_head_captions(drawings, features, rows, head)
    assert [s.image_id for s in kept] == [drawings[0].image_id]
    assert "tabby cat" in kept[0].target and drawings[0].meta["caption_from"] == HEAD_CAPTION
    with pytest.raises(ValueError, match="own classifier"):
        write_head_captions(drawings, features, rows, None)


def test_an_encoder_without_a_head_trains_on_the_captions_the_default_encoders_head_writes():
    _drawings_or_skip("clipart")
    drawings = load_dataset("clipart", "train", 16)
    captioner = build_encoder(CAPTIONER)
    own = captioner([s.load_image() for s in drawings])
    rows = {s.image_id: i for i, s in enumerate(drawings)}
    head, features, _ = captioning_head(drawings, captioner, own, rows)
    assert head is not None and features is own  # an encoder with a head captions for itself
    headless = build_encoder("efficientnet-lite0-swish")
    head, features, head_rows = captioning_head(drawings, headless, headless([drawings[0].load_image()]), {})
    assert head is not None and head.names == captioner.class_head.names
    borrowed = write_head_captions(drawings, features, head_rows, head)
    assert borrowed and [s.target for s in borrowed] == [
        s.target for s in write_head_captions(drawings, own, rows, captioner.class_head)]


def test_scene_backdrops_are_photo_like_deterministic_and_keep_the_drawing():
    sticker = Image.new("RGBA", (60, 60), (0, 0, 0, 0))
    sticker.paste((220, 20, 20, 255), (10, 10, 50, 50))
    plain, busy = place(sticker, random.Random(3)), place(sticker, random.Random(3), backdrop="scene")
    assert busy.tobytes() == place(sticker, random.Random(3), backdrop="scene").tobytes()
    def spread(picture):  # colour variation of the background outside the drawing's bounding box
        pixels = np.asarray(picture, dtype=np.float32)
        return float(np.std(pixels[:, :, 1][(pixels[:, :, 0] - pixels[:, :, 1]) < 100]))

    assert spread(busy) > 3 * max(spread(plain), 1.0)
    reds = np.asarray(busy, dtype=np.float32)
    assert ((reds[:, :, 0] - reds[:, :, 1]) > 100).mean() > 0.05  # the red square is still there
    with pytest.raises(ValueError, match="backdrop must be one of plain, scene"):
        place(sticker, random.Random(0), backdrop="jungle")


def test_drawings_on_scene_backdrops_are_separate_samples_of_the_same_drawings():
    plain, scenes = _drawings_or_skip("emoji"), load_dataset("emoji", "train", 2, backdrop="scene")
    assert [s.meta["name"] for s in scenes] == [s.meta["name"] for s in plain]
    assert all(a.image_id != b.image_id for a, b in zip(plain, scenes))
    assert scenes[0].load_image().size == (224, 224)


def _drawings_or_skip(name: str) -> list:
    missing = {"emoji": EMOJI_FONT, "clipart": CLIPART_ROOT}[name]
    if not missing.exists():
        pytest.skip(f"{missing} is not installed (Debian package; `make data` installs it)")
    samples = load_dataset(name, "train", 2, variants=1)
    assert [s.load_image().size for s in samples] == [(224, 224)] * 2
    return samples


@pytest.mark.slow
@pytest.mark.parametrize("name", ["label", "mlp"])
def test_shipped_fixed_encoder_adapters_name_the_animal_in_photos_the_encoder_knows(photos, name):
    from vlm_demo.combos import get_combo
    from vlm_demo.llms import GenerationSettings
    from vlm_demo.pipeline import VisionLanguageModel

    combo = get_combo(name)
    if not combo.trained:
        pytest.skip(f"no {name} adapter shipped")
    chosen = [s for s in photos if s.image_id in ("photos-chelsea", "photos-cheetah_face", "photos-lion")]
    vlm = VisionLanguageModel.from_combo(combo)
    captions = vlm.caption([s.load_image() for s in chosen], settings=GenerationSettings(max_new_tokens=24))
    named = [names_object(c, s.meta["keywords"]) for s, c in zip(chosen, captions)]
    assert sum(named) >= 2, list(zip([s.image_id for s in chosen], captions))
