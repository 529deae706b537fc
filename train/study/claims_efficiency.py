"""The TerraAlign thesis's two efficiency claims: the query adapter halves the image tokens and still captions as well
as the self-attention adapter (Tables 8-9), and the align stage, which leaves the LLM out, costs far less compute per
training sample than a stage through the LLM (4.2 Discussion)."""

from __future__ import annotations

import statistics
from pathlib import Path

from train.study import Budget, Claim, Finding, register
from train.study.arms import align, qa, qa_eval
from train.study.claims import TERRAALIGN
from train.study.claims_training import CIDER_SMALLEST as HALVING_MARGIN
from train.study.items import cider_items
from train.study.power import HIERARCHICAL, OVER_SEEDS, bootstrap_interval, item_rows, seed_interval
from train.study.runs import final_runs, show, superiority
from train.sweep import read_curve

COST_SMALLEST = 1.0  # the LLM stage costing at least twice the align stage per sample (ratio minus 1)


def non_inferiority(iv: dict, margin: float) -> str:
    """Reproduced when the interval lies above -margin (no worse by the margin); not reproduced when it lies wholly
    below -margin; otherwise inconclusive."""
    if iv["low"] is not None and iv["low"] > -margin:
        return "reproduced"
    if iv["high"] is not None and iv["high"] < -margin:
        return "not reproduced"
    return "inconclusive"


def output_tokens(folder: Path) -> int:
    from vlm_demo.adapters import load_adapter

    return load_adapter(folder / "adapter").num_output_tokens


def query_halving(budget: Budget) -> Finding:
    """The query adapter (24 learnable queries over EfficientNet-Lite0's 49 tokens, as the thesis's 128 over 255)
    against the self-attention adapter (all 49 tokens), both trained alike on captions and shapes questions: held-out
    caption CIDEr-D, paired by seed and caption. Full budget: the caption runs of emd-prealign (attention) and 1 more
    per seed (query)."""
    runs = final_runs([qa("query", budget), qa("attention", budget)], budget)
    items = {name: [cider_items(folder, budget, "real", *qa_eval(budget)) for folder in folders]
             for name, folders in runs.items()}
    gap = bootstrap_interval([item_rows(query, attention)
                              for query, attention in zip(items["qa-query"], items["qa-attention"])])
    cider = {name: [statistics.fmean(seed) for seed in by_seed] for name, by_seed in items.items()}
    tokens = {name: output_tokens(folders[0]) for name, folders in runs.items()}
    return Finding(
        figure=f"caption CIDEr-D: query ({tokens['qa-query']} tokens) {statistics.fmean(cider['qa-query']):.3f}, "
               f"self-attention ({tokens['qa-attention']} tokens) {statistics.fmean(cider['qa-attention']):.3f}; "
               f"query minus attention {show(gap)}",
        value=gap["mean"], low=gap["low"], high=gap["high"], interval_method=HIERARCHICAL,
        details={"cider": cider, "query_minus_attention": gap, "image_tokens": tokens,
                 "bar_axes": ("adapter", "held-out caption CIDEr-D")},
        bars={"CIDEr-D": {f"{name.removeprefix('qa-')} ({tokens[name]} tokens)": seed_interval(values)
                          for name, values in cider.items()}})


def seconds_per_sample(folder: Path) -> float:
    """1 / the median training throughput the run logged (samples per second over each logging window: training
    steps only, not validation, snapshots or checkpoints)."""
    rates = [rate for rate in read_curve(folder, "samples_per_s")[1] if rate]
    if not rates:
        raise ValueError(f"{folder}: no training throughput logged (samples_per_s) in metrics.jsonl")
    return 1 / statistics.median(rates)


def align_cost(budget: Budget) -> Finding:
    """Training seconds per sample (from each run's logged throughput) of the MLP adapter's align stage (EMD to the
    caption's token embeddings, no LLM) against its caption stage through the frozen LLM, per seed, on this machine.
    Full budget: the runs of align-only and pooled-vs-per-patch, nothing trained for this claim."""
    runs = final_runs([align("mlp", budget), qa("mlp", budget)], budget)
    align_seconds = [seconds_per_sample(folder) for folder in runs["align-mlp"]]
    llm_seconds = [seconds_per_sample(folder) for folder in runs["qa-mlp"]]
    ratios = [llm / free for llm, free in zip(llm_seconds, align_seconds)]
    extra = seed_interval([ratio - 1 for ratio in ratios])
    return Finding(
        figure=f"training seconds per sample: align stage {statistics.fmean(align_seconds) * 1000:.1f} ms, caption "
               f"stage through the LLM {statistics.fmean(llm_seconds) * 1000:.1f} ms; the LLM stage costs "
               f"{statistics.fmean(ratios):.1f}x per sample (ratio minus 1: {show(extra, 1)})",
        value=extra["mean"], low=extra["low"], high=extra["high"], interval_method=OVER_SEEDS,
        details={"align_seconds_per_sample": align_seconds, "llm_seconds_per_sample": llm_seconds,
                 "ratio": ratios, "ratio_minus_one": extra,
                 "bar_axes": ("stage", "training ms per sample")},
        bars={"ms per sample": {"align (no LLM)": seed_interval([s * 1000 for s in align_seconds]),
                                "caption (frozen LLM)": seed_interval([s * 1000 for s in llm_seconds])}})


register(Claim("query-halves-tokens", TERRAALIGN, "3.6 Captioning Results (Tables 8-9); 3.3 Query Adapter",
               "the query adapter halves the image tokens and still captions as well as the self-attention adapter",
               "\"reducing the overall token count by half while maintaining high accuracy\"; Table 9's captions "
               "\"even more accurate\" than Table 8's (qualitative examples)", query_halving,
               kind="non-inferiority", smallest_effect=HALVING_MARGIN, unit="CIDEr",
               effect_why="5% of a caption run's CIDEr-D (2.04 in round 1), the study's CIDEr floor: a loss smaller "
                          "than this would not show in the thesis's example captions",
               rule=f"non-inferiority: reproduced if the paired interval of query minus self-attention CIDEr-D lies "
                    f"above -{HALVING_MARGIN}; not reproduced if it lies wholly below -{HALVING_MARGIN}; otherwise "
                    "inconclusive",
               judge=lambda details: non_inferiority(details["query_minus_attention"], HALVING_MARGIN),
               judged=lambda details: [details["query_minus_attention"]],
               deviations=(
                   "24 queries over 49 EfficientNet-Lite0 tokens instead of 128 over CoCa's 255",
                   "CIDEr-D on synthetic shapes captions (caption stage, frozen LLM, captions plus questions) instead "
                   "of the thesis's example captions after LoRA fine-tuning")))
register(Claim("llm-free-align-cost", TERRAALIGN, "4.2 Discussion; Abstract",
               "aligning without the LLM costs far less compute than training through it",
               "\"By omitting the LLM during pre-training ... significantly reduces the computational overhead\" "
               "(no figure; fine-tuning needed 70 GB of A100 memory at batch 16)", align_cost,
               kind="superiority", smallest_effect=COST_SMALLEST, unit="x cost per sample",
               effect_why="the LLM stage costing at least twice as much per sample: under that, leaving the LLM out "
                          "would not be a saving worth a stage",
               rule=f"superiority: reproduced if the seed interval of (LLM stage / align stage seconds per sample) "
                    f"minus 1 lies above 0; not reproduced if it lies wholly below {COST_SMALLEST} (under 2x); "
                    "otherwise inconclusive",
               judge=lambda details: superiority(details["ratio_minus_one"], COST_SMALLEST),
               judged=lambda details: [details["ratio_minus_one"]],
               deviations=(
                   "CPU seconds on this 2-core machine (bf16 where it has bf16 units) instead of GPU hours and memory",
                   "SmolLM2-135M through the caption stage instead of Mistral-7B (a larger LLM widens the gap)",
                   "each run's median logged training throughput, not an operation count; the runs were not timed "
                   "side by side, so other load on the machine would blur the ratio")))
