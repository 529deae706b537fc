"""Training speed: align (no LLM forward) vs caption samples/s, and epoch 2 vs epoch 1 with the feature cache."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from train.config import load_config  # noqa: E402
from train.data import load_dataset  # noqa: E402
from train.features import FeatureCache  # noqa: E402
from train.loop import _batch, make_adapter  # noqa: E402
from train.stages.align import align_stage  # noqa: E402
from train.stages.caption import caption_stage  # noqa: E402
from vlm_demo.encoders import build_encoder  # noqa: E402
from vlm_demo.llms import load_llm  # noqa: E402

BATCH = 8
IMAGES = 96


def steps_per_second(parts, adapter, samples, features, rows, steps: int) -> float:
    optimizer = torch.optim.AdamW([p for p in adapter.parameters() if p.requires_grad], lr=1e-4)
    start = time.perf_counter()
    for step in range(steps):
        chosen = samples[(step * BATCH) % len(samples):][:BATCH]
        loss = parts.loss(_batch(features, rows, chosen, None, "cpu"))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return steps * BATCH / (time.perf_counter() - start)


def epoch_time(parts, adapter, samples, features, rows) -> float:
    optimizer = torch.optim.AdamW(adapter.parameters(), lr=1e-4)
    start = time.perf_counter()
    for offset in range(0, len(samples), BATCH):
        loss = parts.loss(_batch(features, rows, samples[offset:offset + BATCH], None, "cpu"))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return time.perf_counter() - start


def main() -> None:
    config = load_config(None, ['model.adapter="mlp"'])
    encoder = build_encoder(config.model.encoder)
    llm = load_llm(config.model.llm)
    samples = load_dataset("shapes", "train", IMAGES, vqa_per_image=0)
    with tempfile.TemporaryDirectory() as folder:
        cold_start = time.perf_counter()
        features, rows = FeatureCache(encoder, root=Path(folder)).features(samples, progress=False)
        feature_seconds = time.perf_counter() - cold_start
        warm_start = time.perf_counter()
        FeatureCache(encoder, root=Path(folder)).features(samples, progress=False)
        disk_seconds = time.perf_counter() - warm_start

    adapter = make_adapter(config, encoder, llm.name, llm.hidden_size)
    align = align_stage(config, adapter, llm)
    steps_per_second(align, adapter, samples, features, rows, 2)  # warm-up
    align_rate = steps_per_second(align, adapter, samples, features, rows, 12)
    caption = caption_stage(config, adapter, llm)
    steps_per_second(caption, adapter, samples, features, rows, 1)
    caption_rate = steps_per_second(caption, adapter, samples, features, rows, 4)
    print(f"batch {BATCH}, mlp adapter, {llm.name}, 1 training process")
    print(f"align   (EMD to caption embeddings, no LLM forward): {align_rate:7.1f} samples/s")
    print(f"caption (cross-entropy through the frozen LLM):      {caption_rate:7.1f} samples/s")
    print(f"ratio align / caption: {align_rate / caption_rate:.1f}x  (goal >= 20x)")

    train_seconds = epoch_time(align, adapter, samples, features, rows)
    first, second = feature_seconds + train_seconds, epoch_time(align, adapter, samples, features, rows)
    print(f"\nalign epoch over {IMAGES} images: first {first:.2f} s (encoder {feature_seconds:.2f} s + train "
          f"{train_seconds:.2f} s), second {second:.2f} s (features from the cache)")
    print(f"ratio first / second epoch: {first / second:.1f}x  (goal >= 3x)")
    print(f"a later run reading the same {IMAGES} images' features from disk: {disk_seconds:.2f} s "
          f"(computing them took {feature_seconds:.2f} s)")


if __name__ == "__main__":
    main()
