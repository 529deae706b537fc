"""Training speed: caption samples/s before issue 16 (fp32, full logits) and with the defaults, align vs caption,
and epoch 2 vs epoch 1 with the feature cache."""

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
from train.stage_inputs import gathered, make_adapter  # noqa: E402
from train.stages import Batch  # noqa: E402
from train.stages.align import align_stage  # noqa: E402
from train.stages.caption import caption_stage  # noqa: E402
from vlm_demo.encoders import build_encoder  # noqa: E402
from vlm_demo.llms import load_llm  # noqa: E402
from vlm_demo.precision import bf16_supported, compute_dtype, resolve_precision  # noqa: E402

BATCH = 8
IMAGES = 96
CAPTION_ROUNDS = 4


def train_steps(parts, adapter, samples, features, rows, steps: int) -> float:
    """Seconds for `steps` optimizer steps."""
    optimizer = torch.optim.AdamW([p for p in adapter.parameters() if p.requires_grad], lr=1e-4)
    start = time.perf_counter()
    for step in range(steps):
        chosen = samples[(step * BATCH) % len(samples):][:BATCH]
        loss = parts.loss(Batch(gathered(features, rows, chosen, "cpu"), chosen, None))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return time.perf_counter() - start


def interleaved_rates(stages: list, adapter, samples, features, rows, rounds: int) -> list[float]:
    """Samples/s of each stage, one step of each in turn on the same batches, so a busy machine slows all alike."""
    seconds = [0.0] * len(stages)
    for round_index in range(rounds + 1):  # round 0 warms up
        chosen = samples[round_index * BATCH:][:BATCH]
        for index, parts in enumerate(stages):
            elapsed = train_steps(parts, adapter, chosen, features, rows, 1)
            seconds[index] += elapsed if round_index else 0.0
    return [rounds * BATCH / total for total in seconds]


def epoch_time(parts, adapter, samples, features, rows) -> float:
    optimizer = torch.optim.AdamW(adapter.parameters(), lr=1e-4)
    start = time.perf_counter()
    for offset in range(0, len(samples), BATCH):
        chosen = samples[offset:offset + BATCH]
        loss = parts.loss(Batch(gathered(features, rows, chosen, "cpu"), chosen, None))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return time.perf_counter() - start


def main() -> None:
    config = load_config(None, ['model.adapter="mlp"'])
    precision = resolve_precision(config.train.precision, "cpu")
    units = "has bf16 units" if bf16_supported("cpu") else "has no AMX-BF16/AVX512-BF16 units"
    encoder = build_encoder(config.model.encoder)
    llm = load_llm(config.model.llm)
    new_llm = llm if precision == "fp32" else load_llm(config.model.llm, dtype=compute_dtype(precision))
    samples = load_dataset("shapes", "train", IMAGES, vqa_per_image=0)
    with tempfile.TemporaryDirectory() as folder:
        cold_start = time.perf_counter()
        features, rows = FeatureCache(encoder, root=Path(folder), precision=precision).features(samples, progress=False)
        feature_seconds = time.perf_counter() - cold_start
        warm_start = time.perf_counter()
        FeatureCache(encoder, root=Path(folder), precision=precision).features(samples, progress=False)
        disk_seconds = time.perf_counter() - warm_start

    adapter = make_adapter(config, encoder, llm.name, llm.hidden_size)
    align = align_stage(config, adapter, llm)
    train_steps(align, adapter, samples, features, rows, 2)  # warm-up
    align_rate = 12 * BATCH / train_steps(align, adapter, samples, features, rows, 12)
    before = caption_stage(config, adapter, llm, labelled_only=False)
    caption = caption_stage(config, adapter, new_llm)
    before_rate, caption_rate = interleaved_rates([before, caption], adapter, samples, features, rows,
                                                  CAPTION_ROUNDS)
    print(f"batch {BATCH}, mlp adapter, {llm.name} frozen, 1 training process, {torch.get_num_threads()} threads")
    print(f"precision: train.precision={config.train.precision!r} -> {precision} (this CPU {units})")
    print(f"caption before issue 16 (fp32, logits at every position):   {before_rate:7.2f} samples/s")
    print(f"caption, defaults ({precision}, logits at labelled positions only,")
    print(f"         chat prefix before the image computed once):        {caption_rate:7.2f} samples/s")
    print(f"caption speedup over fp32: {caption_rate / before_rate:.1f}x")
    print("  (goal >= 2.0x; steps of both paths interleaved on the same batches)")
    print(f"\nalign   (EMD to caption embeddings, no LLM forward): {align_rate:7.1f} samples/s")
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
