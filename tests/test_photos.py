"""The everyday photo evaluation set: a fixed dev/test split, every photo present on this machine, enough kinds."""

from __future__ import annotations

import pytest

from train.data import load_dataset
from train.data.photos import DEV, KINDS, PHOTOS, photo_path, photos_samples


def test_dev_and_test_are_disjoint_fixed_and_cover_the_set():
    dev, test = load_dataset("photos", "dev"), load_dataset("photos", "test")
    dev_ids, test_ids = {s.image_id for s in dev}, {s.image_id for s in test}
    assert not dev_ids & test_ids and len(dev_ids | test_ids) == len(PHOTOS) >= 60
    assert len(dev) == len(DEV) >= 20 and len(test) >= 30
    assert [s.image_id for s in photos_samples("val")] == [s.image_id for s in dev]  # validation reads dev
    assert {f"photos-{name}" for name in list(PHOTOS)[:15]} <= dev_ids  # the photos that chose recipes stay in dev
    with pytest.raises(ValueError, match="evaluation set"):
        load_dataset("photos", "train")
    with pytest.raises(ValueError, match="splits dev, test"):
        photos_samples("holdout")


def test_every_photo_resolves_and_opens_as_a_real_sized_image():
    for name in PHOTOS:
        assert photo_path(name).is_file(), name
    for sample in load_dataset("photos", "test"):
        image = sample.load_image()
        assert image.mode == "RGB" and min(image.size) >= 100, sample.image_id


def test_photos_span_twenty_kinds_and_every_group_the_issue_asks_for():
    assert set(KINDS) == set(PHOTOS)
    assert len({kind for _, kind in KINDS.values()}) >= 20
    groups = {group for group, _ in KINDS.values()}
    assert {"person", "food", "vehicle", "animal", "plant", "building"} <= groups
    test_groups = {s.meta["group"] for s in load_dataset("photos", "test")}
    assert {"person", "food", "vehicle", "animal", "plant", "building"} <= test_groups


def test_keywords_are_everyday_words_not_catch_all_kinds():
    for name, (_, _, keywords, credit) in PHOTOS.items():
        assert keywords and credit, name
        assert not {"animal", "vehicle", "food", "object", "thing"} & set(keywords), name


def test_the_encoders_top_k_labels_name_a_photo_when_any_of_the_first_k_does():
    from types import SimpleNamespace

    import torch

    from train.evaluate import photo_baselines

    head = SimpleNamespace(names=["moped", "tabby cat", "espresso"],
                           logits=lambda pooled: torch.tensor([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0]]))
    encoder = type("Encoder", (), {"class_head": head, "__call__": lambda self, images: SimpleNamespace(pooled=None)})()
    photos = [SimpleNamespace(meta={"keywords": ["cat"]}, load_image=lambda: None),
              SimpleNamespace(meta={"keywords": ["coffee", "espresso"]}, load_image=lambda: None)]
    found = photo_baselines(encoder, photos)  # a 3-class head: no everyday words (those are ImageNet-1k's)
    assert found == {"encoder_top1_baseline": 0.5, "encoder_top3_baseline": 1.0}  # the cat's top-1 is "moped"
    assert photo_baselines(type("NoHead", (), {"class_head": None})(), photos) == {}
