"""Caption data users bring: JSONL/CSV + image folder, COCO captions JSON, HF imagefolder (metadata.jsonl)."""

from __future__ import annotations

import csv
import json
import logging
from collections import Counter
from pathlib import Path

from train.data.base import Sample
from vlm_demo.images import ImageError, open_image

log = logging.getLogger("train.data")
CAPTION_PROMPT = "Describe this image."


def _records_jsonl(path: Path) -> list[dict]:
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                records.append({"_bad": f"line {number} is not JSON"})
    return records


def _records_csv(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _records_coco(path: Path) -> list[dict]:
    data = json.loads(path.read_text(encoding="utf-8"))
    files = {image["id"]: image["file_name"] for image in data.get("images", [])}
    return [{"image": files.get(a.get("image_id"), f"<unknown image id {a.get('image_id')}>"),
             "caption": a.get("caption", "")} for a in data.get("annotations", [])]


def caption_samples(path: str | Path, images: str | Path | None = None, prompt: str = CAPTION_PROMPT,
                    check_images: bool = True) -> tuple[list[Sample], Counter]:
    """Read a caption file, or an imagefolder with metadata.jsonl; returns samples and counts of skipped records.

    Accepted: `.jsonl` / `.csv` with `image` (or `file_name`) and `caption` (or `text`) fields, a COCO captions
    `.json`, or a folder holding `metadata.jsonl` (Hugging Face imagefolder). Image paths are relative to
    `images` (default: the file's folder). Records with a missing file, unreadable image or empty caption are
    skipped and counted, never fatal.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "metadata.jsonl"
        if not path.is_file():
            raise FileNotFoundError(f"{path.parent}: an imagefolder needs a metadata.jsonl")
    readers = {".jsonl": _records_jsonl, ".csv": _records_csv, ".json": _records_coco}
    if path.suffix not in readers:
        raise ValueError(f"{path}: caption files must be .jsonl, .csv or COCO .json")
    root = Path(images) if images else path.parent
    skipped: Counter = Counter()
    samples, references = [], {}
    for record in readers[path.suffix](path):
        if "_bad" in record:
            skipped["malformed record"] += 1
            continue
        name = record.get("image") or record.get("file_name") or ""
        caption = str(record.get("caption") or record.get("text") or "").strip()
        if not caption:
            skipped["empty caption"] += 1
            continue
        image_path = root / name
        if not name or not image_path.is_file():
            skipped["missing image file"] += 1
            continue
        references.setdefault(str(image_path), []).append(caption)
        samples.append((image_path, caption))
    checked: dict[str, bool] = {}
    result = []
    for image_path, caption in samples:
        key = str(image_path)
        if check_images and key not in checked:
            try:
                open_image(image_path)
                checked[key] = True
            except ImageError:
                checked[key] = False
        if check_images and not checked[key]:
            skipped["unreadable image"] += 1
            continue
        result.append(Sample(f"file-{key}", lambda p=image_path: open_image(p), prompt, caption, "caption",
                             qtype=path.name, references=references[key]))
    if skipped:
        log.warning("%s: skipped %d records (%s)", path, sum(skipped.values()),
                    ", ".join(f"{k}: {v}" for k, v in sorted(skipped.items())))
    log.info("%s: %d samples from %d images", path, len(result), len(references))
    return result, skipped
