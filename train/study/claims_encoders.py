"""The ResNet-to-ViT seed's claims, as feature distillation (no LLM): a multi-stage adapter fusing the encoder's stage
maps imitates a ViT teacher's patch tokens (MSE) better than one reading only the last map, and fine-tuning the
encoder (joint, then sequential) lowers the error further. Our CNN is EfficientNet-Lite0 (the seed's ResNet-50) and
our teacher DINOv2-small's 16 x 16 patch tokens (the seed's Qwen2.5-VL vision tower)."""

from __future__ import annotations

import statistics
from pathlib import Path

from train.config import load_config
from train.study import Budget, Claim, Finding, register
from train.study.items import mse_items
from train.study.power import HIERARCHICAL, bootstrap_interval, item_rows
from train.study.runs import combined, eval_of, final_runs, show, superiority, toml_value
from train.sweep import Arm, mean_curve

RESNET = "resnet-to-vit-adapter.txt"
TEACHER = "dinov2-small"
GRID = 16  # the teacher's 224 px patch grid: 256 tokens (its CLS token is dropped)
LAST_STAGE = 3  # EfficientNet-Lite0 gives four stage maps; the last alone is the single embedding
DISTILLATION = ['align.loss="mse"', f'align.teacher="{TEACHER}"']
TINY = {"proj_dim": 16, "fusion_dim": 32, "transformer_layers": 1}  # the --tiny budget's adapter


def distil(name: str, budget: Budget, version: str, *extra: str, stages: list[int] | None = None,
           after: Arm | None = None) -> Arm:
    """A multistage adapter of `version` trained by MSE to the teacher's tokens (the align stage, no LLM)."""
    options = {"version": version, "grid_size": GRID, **({"stages": stages} if stages else {}),
               **(TINY if budget.name == "tiny" else {})}
    return Arm(name, [("align", ['model.adapter="multistage"', f"model.adapter_options={toml_value(options)}",
                                 *DISTILLATION, *extra])], after=after)


def feature_mse(folders: list[Path], budget: Budget) -> list[float]:
    """Each seed's mean per-image MSE to the teacher's tokens over the evaluation images (computed once)."""
    return [eval_of(folder, budget, "real", *DISTILLATION)["feature_mse"]["mse_mean"] for folder in folders]


def mse_gap(first: list[Path], second: list[Path], budget: Budget) -> dict:
    """first minus second test feature MSE, bootstrapped over seeds and images (paired by seed and image)."""
    return bootstrap_interval([item_rows(mse_items(a, budget, *DISTILLATION), mse_items(b, budget, *DISTILLATION))
                               for a, b in zip(first, second)])


def multistage_fusion(budget: Budget) -> Finding:
    """Multistage v1-v4 (all four stage maps) against the same v1 reading only the last map, frozen encoder. Full
    budget: 5 distillation runs per seed, no LLM (v4's is shared with encoder-training)."""
    arms = [distil("distil-single", budget, "v1", stages=[LAST_STAGE]),
            *(distil(f"distil-{v}", budget, v) for v in ("v1", "v2", "v3", "v4"))]
    runs = final_runs(arms, budget)
    mse = {name: feature_mse(folders, budget) for name, folders in runs.items()}
    gaps = {v: mse_gap(runs["distil-single"], runs[f"distil-{v}"], budget) for v in ("v1", "v2", "v3", "v4")}
    means = ", ".join(f"{name.removeprefix('distil-')} {statistics.fmean(v):.4f}" for name, v in mse.items())
    return Finding(
        figure=f"test feature MSE to {TEACHER}'s tokens: {means}; single minus v1 {show(gaps['v1'], 4)}, single "
               f"minus v4 {show(gaps['v4'], 4)}",
        value=gaps["v1"]["mean"], low=gaps["v1"]["low"], high=gaps["v1"]["high"], interval_method=HIERARCHICAL,
        details={"feature_mse": mse, "single_minus": gaps, "curve_axes": ("step", "validation MSE")},
        curves={name: mean_curve(folders, "val_loss") for name, folders in runs.items()})


def encoder_training(budget: Budget) -> Finding:
    """Multistage v4 with the encoder frozen, trained jointly with the adapter (encoder at model.encoder_lr, 1e-4 as
    in the seed, BatchNorm frozen), and sequentially (the jointly tuned encoder frozen while the adapter trains on).
    Full budget: per seed the frozen v4 run of multistage-fusion, 1 joint run (the encoder trains: the slowest
    distillation), 1 sequential run after it, which has trained for the joint run's steps as well, and 1 frozen run
    of twice the steps to set against the sequential one at the same number of adapter steps."""
    steps = load_config(None, budget.base).train.max_steps
    frozen = distil("distil-v4", budget, "v4")
    frozen_long = distil("distil-v4-twice-the-steps", budget, "v4", f"train.max_steps={2 * steps}")
    joint = distil("distil-v4-joint", budget, "v4", 'model.encoder_mode="joint"')
    sequential = distil("distil-v4-joint-sequential", budget, "v4", 'model.encoder_mode="sequential"', after=joint)
    arms = {"frozen": frozen, f"frozen, {2 * steps} steps": frozen_long, "joint": joint,
            "sequential": sequential}
    runs = final_runs(list(arms.values()), budget)
    mse = {name: feature_mse(runs[arm.name], budget) for name, arm in arms.items()}
    folders = {name: runs[arm.name] for name, arm in arms.items()}
    gaps = {"frozen minus joint": mse_gap(folders["frozen"], folders["joint"], budget),
            "frozen for as long minus sequential": mse_gap(folders[f"frozen, {2 * steps} steps"],
                                                           folders["sequential"], budget),
            "frozen minus sequential": mse_gap(folders["frozen"], folders["sequential"], budget),
            "joint minus sequential": mse_gap(folders["joint"], folders["sequential"], budget)}
    means = ", ".join(f"{name} {statistics.fmean(values):.4f}" for name, values in mse.items())
    first, matched = gaps["frozen minus joint"], gaps["frozen for as long minus sequential"]
    return Finding(
        figure=f"test feature MSE to {TEACHER}'s tokens (v4): {means}; frozen minus joint {show(first, 4)}; frozen "
               f"for {2 * steps} steps minus sequential {show(matched, 4)}; joint minus sequential "
               f"{show(gaps['joint minus sequential'], 4)}",
        value=first["mean"], low=first["low"], high=first["high"], interval_method=HIERARCHICAL,
        details={"feature_mse": mse, "gaps": gaps,
                 "curve_axes": ("adapter step (sequential continues the joint run)", "validation MSE")},
        curves={name: shifted(mean_curve(runs[arm.name], "val_loss"), steps if arm is sequential else 0)
                for name, arm in arms.items()})


MSE_SMALLEST = 0.1  # feature MSE
MSE_WHY = ("about 4% of our single-map MSE (2.35 in round 1); the paper's gaps were 12-15% of its MSE (3.20 to 2.72, "
           "2.72 to 2.40)")


def encoder_judged(details: dict) -> list[dict]:
    return [details["gaps"]["frozen minus joint"], details["gaps"]["frozen for as long minus sequential"]]


def encoder_verdict(details: dict) -> str:
    return combined([superiority(iv, MSE_SMALLEST) for iv in encoder_judged(details)])


def shifted(curve: tuple[list[int], list[float]], by: int) -> tuple[list[int], list[float]]:
    return [step + by for step in curve[0]], curve[1]


register(Claim("multistage-fusion", RESNET, "4.1-4.2 and 5 Experiments (Table 1)",
               "fusing every stage map of the CNN imitates the ViT's tokens better than a single (last) embedding",
               "Table 1 test MSE: single-embedding adapters 3.20; frozen multi-stage v1 2.7226 (std 0.6750)",
               multistage_fusion, kind="superiority", smallest_effect=MSE_SMALLEST, unit="feature MSE",
               effect_why=MSE_WHY,
               rule=f"superiority: reproduced if the paired interval of (last map only minus v1 fusion) test MSE lies "
                    f"above 0 (the seed's table compares its single-embedding adapters with v1); not reproduced if it "
                    f"lies wholly below {MSE_SMALLEST}; otherwise inconclusive. v2-v4 are reported beside it",
               judge=lambda details: superiority(details["single_minus"]["v1"], MSE_SMALLEST),
               judged=lambda details: [details["single_minus"]["v1"]],
               deviations=(
                   "EfficientNet-Lite0's stage maps instead of ResNet-50's",
                   "DINOv2-small's tokens (257 x 384) as the teacher instead of Qwen2.5-VL-3B's ViT (196 x 2048)",
                   "synthetic shapes images (400 to train, 50 to test) instead of the paper's real photos",
                   "300 steps")))
register(Claim("encoder-training", RESNET, "4.3-4.4 and 5 Experiments (Table 1)",
               "fine-tuning the encoder jointly, then the adapter alone (sequential), lowers the feature MSE",
               "Table 1 test MSE: frozen multi-stage v1 2.7226; joint (v4) 2.3967 (std 0.5899); sequential (v4) "
               "2.3569 (std 0.5676)", encoder_training,
               kind="superiority", smallest_effect=MSE_SMALLEST, unit="feature MSE", effect_why=MSE_WHY,
               rule=f"superiority: reproduced if the paired intervals of frozen minus joint MSE (both trained for the "
                    f"budget's steps) and of frozen minus sequential MSE (both for twice the steps: sequential "
                    f"continues the joint run) both lie above 0 (tuning the encoder helps); not reproduced if either "
                    f"lies wholly below {MSE_SMALLEST}; otherwise inconclusive. Joint minus sequential (the seed's "
                    "2.3967 vs 2.3569, within its std 0.59) is reported, not judged",
               judge=encoder_verdict, judged=encoder_judged,
               deviations=(
                   "EfficientNet-Lite0's stage maps instead of ResNet-50's; DINOv2-small's tokens as the teacher",
                   "300 steps a schedule (sequential: 300 joint then 300 adapter-only, compared with 600 frozen "
                   "steps)",
                   "synthetic shapes images (400 to train, 50 to test) instead of the paper's real photos")))
