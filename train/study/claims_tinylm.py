"""PaLM2-VAdapter's claims, with its tiny LM pretrained as the paper's is (the first layers and embeddings of the
LLM, `init_from_llm`): trained progressively (first as a caption decoder without the LLM, then as the adapter) it
converges faster than a perceiver resampler, and faster than the same tiny LM trained as the adapter directly. Both
compare the area under the caption stage's validation curve, validated five times as often as the budget."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from train.study import Budget, Claim, Finding, register
from train.study.arms import adapter, finer_validation, llm_config
from train.study.power import OVER_SEEDS, paired_seed_interval
from train.study.runs import final_runs, paired_verdict, show
from train.sweep import Arm, final_value, mean_curve, read_curve

PALM2 = "palm2-vadapter.txt"
FINE = 5  # validation five times as often as the budget's, so the area under the curve follows it closely
PRETRAINED_LAYERS = 4  # the LLM's first 4 of 30 layers (SmolLM2-135M): a tiny LM, as the paper's 108M is to PaLM2
AREA_SMALLEST = 0.05  # nats of mean validation loss over the caption stage
AREA_WHY = ("about 3% of the caption stage's validation loss (about 1.5 in round 1), averaged over the stage: a gap "
            "the curves show")


def pretrained_tinylm(budget: Budget) -> list[str]:
    """The tinylm family with the LLM's layer shapes, its first PRETRAINED_LAYERS layers and embeddings copied in."""
    from vlm_demo.adapters.tinylm import options_matching

    config = llm_config(budget)
    return adapter("tinylm", budget, **options_matching(config), init_from_llm=True,
                   lm_layers=min(PRETRAINED_LAYERS, config.num_hidden_layers))


def arms(budget: Budget) -> dict[str, Arm]:
    tiny_lm, every = pretrained_tinylm(budget), finer_validation(budget, FINE)
    return {"progressive": Arm("tinylm-pretrained-progressive",
                               [("decoder", tiny_lm), ("caption", [*tiny_lm, *every])]),
            "direct": Arm("tinylm-pretrained-direct", [("caption", [*tiny_lm, *every])]),
            "perceiver": Arm("perceiver-fine", [("caption", [*adapter("perceiver", budget), *every])])}


def area(folder: Path) -> float:
    """Mean validation loss over the caption stage: the trapezoid area under its curve divided by its steps."""
    steps, losses = read_curve(folder, "val_loss")
    if len(steps) < 2:
        return losses[0]
    spans = [(b - a) * (x + y) / 2 for a, b, x, y in zip(steps, steps[1:], losses, losses[1:])]
    return sum(spans) / (steps[-1] - steps[0])


def pretrained(folder: Path) -> bool:
    return bool(json.loads((folder / "adapter" / "config.json").read_text()).get("init_from_llm"))


def trainable(folder: Path) -> int:
    return json.loads((folder / "summary.json").read_text())["trainable_parameters"]


def compared(budget: Budget, baseline: str) -> Finding:
    """The progressive tiny LM against `baseline` (perceiver or direct), paired by seed: areas and final losses."""
    built = arms(budget)
    runs = final_runs([built["progressive"], built[baseline]], budget)
    mine, theirs = runs[built["progressive"].name], runs[built[baseline].name]
    areas = {name: [area(folder) for folder in folders] for name, folders in runs.items()}
    gap = paired_seed_interval(areas[built[baseline].name], areas[built["progressive"].name])
    final_gap = paired_seed_interval([final_value(f) for f in theirs], [final_value(f) for f in mine])
    sizes = {name: trainable(folders[0]) for name, folders in runs.items()}
    return Finding(
        figure=f"caption-stage validation loss, {baseline} minus progressive tiny LM: mean over the stage "
               f"{show(gap)}; final {show(final_gap)} ({len(budget.seeds)} seeds, paired); trainable parameters: "
               + ", ".join(f"{name} {size / 1e6:.1f} M" for name, size in sizes.items()),
        value=gap["mean"], low=gap["low"], high=gap["high"], interval_method=OVER_SEEDS,
        details={"area_gap": gap, "final_gap": final_gap, "areas": areas, "trainable_parameters": sizes,
                 "mean_area": {name: statistics.fmean(values) for name, values in areas.items()},
                 "premise_restored": all(pretrained(folder) for folder in mine),
                 "curve_axes": ("step of the caption stage", "validation loss")},
        curves={name: mean_curve(folders, "val_loss") for name, folders in runs.items()})


def judge(details: dict) -> str:
    """The area rule; a round-1 record measured steps to a threshold instead, which this rule cannot judge."""
    if "area_gap" not in details:
        return "inconclusive"
    return paired_verdict(details["area_gap"], details["final_gap"], AREA_SMALLEST)


def judged(details: dict) -> list[dict]:
    return [details["area_gap"]] if "area_gap" in details else []


RULE = (f"superiority: reproduced if the paired interval of the mean validation loss over the caption stage "
        "(the other arm minus the progressive tiny LM) lies above 0 and that of the final loss does not lie at or "
        f"below 0; not reproduced if it lies wholly below {AREA_SMALLEST} nats; otherwise inconclusive. The tiny LM's "
        "decoder stage is not counted")
DEVIATIONS = (f"the tiny LM is SmolLM2-135M's first {PRETRAINED_LAYERS} layers and embeddings (PaLM2-VAdapter's is "
              "a separately pretrained 108M PaLM2)",
              "300 decoder steps, then 300 adapter steps on 400 shapes images; validation every 10 steps",
              "the tiny LM carries SmolLM2's 49,152-row embedding table, so it has more trainable parameters than "
              "the perceiver; the paper's has 30-70% fewer")
register(Claim("tinylm-progressive", PALM2, "Abstract; Figure 1 (faster, higher, stronger)",
               "a tiny LM trained first as a caption decoder, then as the adapter, converges faster than a perceiver "
               "resampler", "Figure 1 (curves, no numbers in our copy): faster convergence and higher performance "
               "than the perceiver-resampler baseline with 30-70% fewer parameters",
               lambda budget: compared(budget, "perceiver"),
               kind="superiority", smallest_effect=AREA_SMALLEST, unit="nats", effect_why=AREA_WHY,
               rule=RULE, judge=judge, judged=judged, deviations=DEVIATIONS,
               broken_premise="the progressive recipe rests on a pretrained tiny LM; one started from random weights "
                              "does not test it (restored by init_from_llm)"))
register(Claim("progressive-vs-direct", PALM2, "Figure 2 (b); the progressive-training ablation",
               "the tiny LM trained progressively (decoder first) beats the same tiny LM trained as the adapter "
               "directly", "progressive alignment (decoder, then adapter) against training the pretrained tiny LM "
               "as the adapter from the start", lambda budget: compared(budget, "direct"),
               kind="superiority", smallest_effect=AREA_SMALLEST, unit="nats", effect_why=AREA_WHY,
               rule=RULE, judge=judge, judged=judged, deviations=DEVIATIONS))
