"""Training data: synthetic shapes, real classification sets, user caption formats, feature cache."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from train.data import caption_samples, image_digest, load_dataset
from train.data.shapes import COLOURS, SHAPES, shapes_samples


def test_shapes_are_deterministic_by_seed():
    first, second = shapes_samples("train", 5), shapes_samples("train", 5)
    assert [s.target for s in first] == [s.target for s in second]
    assert image_digest(first[0].load_image()) == image_digest(second[0].load_image())


def test_shapes_splits_never_share_an_image():
    digests = {split: {image_digest(s.load_image()) for s in shapes_samples(split, 30) if s.task == "caption"}
               for split in ("train", "val", "test")}
    assert not digests["train"] & digests["val"] and not digests["train"] & digests["test"]
    assert not digests["val"] & digests["test"]


def test_shapes_cover_colours_shapes_counts_and_question_types():
    samples = shapes_samples("train", 300, vqa_per_image=3)
    objects = [o for s in samples if s.task == "caption" for o in s.meta["objects"]]
    assert {o["colour"] for o in objects} == set(COLOURS) and {o["shape"] for o in objects} == set(SHAPES)
    assert {len(s.meta["objects"]) for s in samples} == {1, 2, 3, 4}
    assert {s.qtype for s in samples if s.task == "vqa"} == {"count", "colour", "shape", "position"}
    assert len({s.target for s in samples if s.task == "caption"}) > 250  # wording varies


def test_caption_names_what_was_drawn():
    sample = next(s for s in shapes_samples("test", 20) if s.task == "caption" and len(s.meta["objects"]) == 1)
    obj = sample.meta["objects"][0]
    assert obj["colour"] in sample.target and obj["shape"] in sample.target


@pytest.mark.parametrize("name", ["digits", "textiles"])
def test_classification_sets_have_disjoint_splits_and_class_labels(name):
    splits = {split: load_dataset(name, split) for split in ("train", "val", "test")}
    ids = {split: {s.image_id for s in samples} for split, samples in splits.items()}
    assert not ids["train"] & ids["test"] and not ids["val"] & ids["test"]
    labels = {s.label for s in splits["train"]}
    assert len(labels) == (10 if name == "digits" else 3)
    assert splits["test"][0].load_image().mode == "RGB"


@pytest.fixture
def caption_folder(tmp_path):
    for name, colour in [("a.png", "red"), ("b.png", "blue")]:
        Image.new("RGB", (32, 32), colour).save(tmp_path / name)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    return tmp_path


def test_jsonl_skips_and_counts_bad_records(caption_folder):
    lines = [{"image": "a.png", "caption": "a red square"}, {"image": "b.png", "caption": ""},
             {"image": "gone.png", "caption": "missing"}, {"image": "broken.png", "caption": "unreadable"}]
    path = caption_folder / "captions.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n{not json\n")
    samples, skipped = caption_samples(path)
    assert [s.target for s in samples] == ["a red square"]
    assert skipped == {"empty caption": 1, "missing image file": 1, "unreadable image": 1, "malformed record": 1}


def test_csv_with_image_folder(caption_folder, tmp_path_factory):
    path = tmp_path_factory.mktemp("csv") / "captions.csv"
    path.write_text("image,caption\na.png,red\nb.png,blue\n")
    samples, skipped = caption_samples(path, images=caption_folder)
    assert [s.target for s in samples] == ["red", "blue"] and not skipped
    assert samples[1].load_image().getpixel((0, 0)) == (0, 0, 255)


def test_coco_captions_json_groups_references(caption_folder):
    coco = {"images": [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "b.png"}],
            "annotations": [{"image_id": 1, "caption": "red one"}, {"image_id": 1, "caption": "a red image"},
                            {"image_id": 2, "caption": "blue"}, {"image_id": 9, "caption": "orphan"}]}
    path = caption_folder / "captions.json"
    path.write_text(json.dumps(coco))
    samples, skipped = caption_samples(path)
    assert len(samples) == 3 and skipped == {"missing image file": 1}
    assert samples[0].references == ["red one", "a red image"]


def test_hf_imagefolder_metadata(caption_folder):
    (caption_folder / "metadata.jsonl").write_text(json.dumps({"file_name": "b.png", "text": "blue"}) + "\n")
    samples, _ = caption_samples(caption_folder)
    assert [s.target for s in samples] == ["blue"]


def test_feature_cache_reuses_and_invalidates(monkeypatch, tmp_path):
    monkeypatch.setenv("VLM_DEMO_CACHE", str(tmp_path))
    from train.features import FeatureCache
    from vlm_demo.encoders import build_encoder

    encoder = build_encoder("efficientnet-lite0")
    samples = shapes_samples("val", 3, vqa_per_image=0)
    first, rows = FeatureCache(encoder).features(samples, progress=False)
    warm = FeatureCache(encoder)
    second, _ = warm.features(samples, progress=False)
    assert (warm.hits, warm.misses) == (3, 0)
    assert first.tokens.shape == (3, 49, 1280) and (first.tokens == second.tokens).all()
    encoder.image_size = 192  # new preprocessing: a new cache folder
    changed = FeatureCache(encoder)
    changed.features(samples, progress=False)
    assert changed.misses == 3 and changed.folder != warm.folder
    encoder.image_size = 224
    edited = shapes_samples("val", 3, vqa_per_image=0)
    edited[0].load_image = lambda: Image.new("RGB", (224, 224), "white")  # new image content: recomputed
    again = FeatureCache(encoder)
    again.features(edited, progress=False)
    assert (again.hits, again.misses) == (2, 1)


def test_feature_cache_serves_tokens_from_entries_stored_with_stage_maps(monkeypatch, tmp_path):
    monkeypatch.setenv("VLM_DEMO_CACHE", str(tmp_path))
    from train.features import FeatureCache
    from vlm_demo.encoders import build_encoder

    encoder = build_encoder("efficientnet-lite0")
    samples = shapes_samples("val", 2, vqa_per_image=0)
    with_stages, _ = FeatureCache(encoder, keep_stages=True).features(samples, progress=False)
    tokens_only = FeatureCache(encoder)
    again, _ = tokens_only.features(samples, progress=False)
    assert (tokens_only.hits, tokens_only.misses) == (2, 0) and again.stages == []
    assert torch.equal(again.tokens, with_stages.tokens)


def test_default_shapes_samples_stay_what_the_shipped_adapters_were_trained_on():
    import hashlib
    import json

    rows = [(s.image_id, s.prompt, s.target, s.task, s.qtype, s.label, s.references, s.meta)
            for split in ("train", "test") for s in shapes_samples(split, 40, vqa_per_image=2)]
    assert hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16] == "b30ff51e882fdd39"
