"""Benchmark: nearest-vocabulary table and PCA figure refresh, cold and warm, against the alignment issue's goals."""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from PIL import Image  # noqa: E402

from vlm_demo import analysis  # noqa: E402
from vlm_demo.analysis import figures  # noqa: E402
from vlm_demo.pipeline import VisionLanguageModel  # noqa: E402

TABLE_GOAL = 0.020  # seconds, nearest-vocabulary table with warm caches
REFRESH_GOAL = 0.300  # seconds, PCA figure for a new image with warm caches
ANCHOR_TABLE = 0.042  # the anchor: plain matmul + topk, 49 tokens x 49,152 rows
ANCHOR_FIT = 1.0  # the anchor: 2-component randomized PCA of the whole vocabulary


def timed(function, repeat: int = 1) -> tuple[object, float]:
    """(last result, median seconds over `repeat` calls)."""
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return result, statistics.median(times)


def photos() -> dict[str, Image.Image]:
    from skimage import data

    return {name: Image.fromarray(getattr(data, name)()).convert("RGB")
            for name in ("chelsea", "astronaut", "coffee", "rocket", "cat")}


def line(label: str, seconds: float, goal: float | None = None, anchor: float | None = None) -> None:
    extra = []
    if goal is not None:
        extra.append(f"{seconds / goal:.2f}x the {goal * 1e3:.0f} ms goal ({'met' if seconds <= goal else 'MISSED'})")
    if anchor is not None:
        extra.append(f"{seconds / anchor:.2f}x the {anchor * 1e3:.0f} ms anchor")
    print(f"  {label:<58} {seconds * 1e3:9.1f} ms   {'; '.join(extra)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's own choice)")
    if parser.parse_args().threads:
        torch.set_num_threads(parser.parse_args().threads)
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores, torch threads {torch.get_num_threads()}")
    images = photos()
    vlm, seconds = timed(lambda: VisionLanguageModel.from_combo("default"))
    print(f"combination '{vlm.name}' loaded in {seconds:.1f} s ({vlm.status})")
    tokens = vlm.image_tokens([images["chelsea"]])[0]
    weight = vlm.llm.vocabulary_embeddings()
    print(f"{tokens.shape[0]} image tokens x {weight.shape[0]:,} vocabulary rows of width {weight.shape[1]}")

    print("\nnearest-vocabulary table (top 10 per token + aggregate)")

    def plain() -> tuple:
        return (F.normalize(tokens, dim=-1) @ F.normalize(weight, dim=-1).T).topk(10, dim=1)

    plain()
    _, plain_seconds = timed(plain, 5)
    line("plain fp32 matmul + topk, vocabulary normalised per call", plain_seconds, anchor=ANCHOR_TABLE)
    analysis.clear_caches()
    _, cold = timed(lambda: analysis.neighbor_table(tokens, analysis.vocabulary(vlm.llm), 10))
    vocab = analysis.vocabulary(vlm.llm)
    line("cold: cache build + precision choice + labels + table", cold)
    searches = ", ".join(f"{name} {seconds * 1e3:.1f} ms" for name, seconds in vocab.timings.items())
    print(f"    (precision chosen: {vocab.precision}; one search when choosing: {searches})")
    for precision in ("fp32", "bf16"):
        _, warm = timed(lambda p=precision: analysis.neighbor_table(tokens, analysis.vocabulary(vlm.llm), 10, p), 20)
        line(f"warm table, {precision} (exact fp32 cosines either way)", warm, TABLE_GOAL)
    _, warm = timed(lambda: analysis.neighbor_table(tokens, analysis.vocabulary(vlm.llm), 10), 20)
    line(f"warm table, chosen precision ({vocab.precision})", warm, TABLE_GOAL, ANCHOR_TABLE)
    print(f"    {plain_seconds / warm:.1f}x faster than the plain path measured just now; scaled to the anchor's "
          f"machine state that is ~{warm * ANCHOR_TABLE / plain_seconds * 1e3:.0f} ms")

    print("\nPCA figure (10,000-token background cloud, plotly figure object built)")
    analysis.clear_caches()

    def refresh(name: str, fit_on: str = "vocab") -> object:
        groups = {name: vlm.image_tokens([images[name]])[0]}
        return figures.plotly_figure(figures.pca_view(vlm, groups, fit_on=fit_on))

    _, cold = timed(lambda: refresh("chelsea"))
    line("cold: vocabulary cache + randomized PCA fit + labels + figure", cold)
    _, fit = timed(lambda: analysis.vocabulary_basis(analysis.vocabulary(vlm.llm), seed=1))
    line("  of which a randomized 2-component PCA fit of the vocabulary", fit, anchor=ANCHOR_FIT)
    for fit_on in ("vocab", "vocab+image"):
        refresh("chelsea", fit_on)  # warms the scatter matrix for vocab+image
        warm = statistics.median(timed(lambda n=name, f=fit_on: refresh(n, f))[1]
                                 for name in ("astronaut", "coffee", "rocket", "cat"))
        line(f"warm refresh for a new image, fit on {fit_on} (incl. encoder)", warm, REFRESH_GOAL)
    _, encode = timed(lambda: vlm.image_tokens([images["coffee"]]), 5)
    line("  of which image -> encoder -> adapter tokens", encode)
    _, png = timed(lambda: figures.save_png(figures.pca_view(vlm, {"cat": tokens}), "/tmp/vlm_demo_bench_pca.png"))
    line("PNG export with matplotlib (warm caches)", png)
    vocab = analysis.vocabulary(vlm.llm)
    (measured, stderr), baseline = timed(lambda: analysis.random_baseline(vocab))
    closed = analysis.random_baseline_closed_form(*vocab.embeddings.shape)
    print(f"\nrandom Gaussian baseline for {vocab.name}: {measured:.4f} ± {stderr:.4f} (256 draws, "
          f"{baseline:.2f} s), closed form {closed:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
