"""Analysis of a trained adapter over many images (a folder, or the evaluation split): nearest-vocabulary cosines
aggregated against the random-vector baseline, the spectrum of each Linear weight's change since step 0 (a linear
adapter's single layer), and the principal components holding 80% of the image tokens' variance (with the evaluation
split: also of the image and caption-text tokens together, as the TerraAlign thesis counted them).

`python -m train analyse --config FILE [--checkpoint DIR] [--images FOLDER] [--initial DIR] [key=value ...]`
writes `analysis.json` in the run's folder."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import torch

from train.config import TrainConfig
from train.loop import gather_samples
from train.validation import SNAPSHOTS, snapshot_name
from vlm_demo import analysis
from vlm_demo.checkpoint import Checkpoint
from vlm_demo.images import SUFFIXES, open_image

Z95 = 1.959964


def mean_interval(values: list[float]) -> dict[str, float]:
    """Mean, standard deviation and a normal 95% interval of the mean."""
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    half = Z95 * sd / math.sqrt(len(values))
    return {"mean": mean, "sd": sd, "low": mean - half, "high": mean + half, "n": len(values)}


def images_to_analyse(config: TrainConfig, folder: str | None = None, limit: int = 0) -> list[tuple[str, object]]:
    """(name, image) of every image in `folder` (sorted), else of each distinct image of `data.eval`'s test split."""
    if folder:
        paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in SUFFIXES)
        if not paths:
            raise ValueError(f"{folder}: no images ({', '.join(sorted(SUFFIXES))})")
        pairs = [(p.name, open_image(p)) for p in paths]
    else:
        unique = {s.image_id: s for s in gather_samples(config.data.eval, "test")}
        pairs = [(image_id, sample.load_image()) for image_id, sample in unique.items()]
    return pairs[:limit] if limit else pairs


def cosine_summary(tokens: list[torch.Tensor], vocab, baseline_samples: int = 256) -> dict:
    """Every image token's best cosine to the vocabulary, pooled over images, against a Gaussian vector's."""
    best = torch.cat([analysis.top_k(t, vocab, k=1)[0][:, 0] for t in tokens]).tolist()
    baseline, stderr = analysis.random_baseline(vocab, baseline_samples)
    summary = mean_interval(best)
    return {"max_cosine": summary, "random_baseline": {"mean": baseline, "stderr": stderr,
                                                       "samples": baseline_samples},
            "ratio_to_baseline": summary["mean"] / baseline if baseline else None,
            "share_of_tokens_above_baseline": sum(b > baseline for b in best) / len(best)}


def components_summary(tokens: list[torch.Tensor], threshold: float = 0.8) -> dict:
    """Components for `threshold` of the variance: per image (over its tokens) and over all images' tokens."""
    per_image = [analysis.components_for_variance(t, threshold) for t in tokens]
    pooled = torch.cat([t.reshape(-1, t.shape[-1]) for t in tokens]).double()
    values = torch.linalg.svdvals(pooled - pooled.mean(dim=0)) ** 2
    return {"threshold": threshold, "per_image": mean_interval([float(c) for c in per_image]),
            "pooled": analysis.components_for_variance(pooled, threshold),
            "first_two_share": float(values[:2].sum() / values.sum()) if values.sum() > 0 else 0.0,
            "tokens_per_image": int(tokens[0].shape[0]),
            # a few tokens far longer than the rest put most of the variance along one direction
            "largest_over_median_norm": mean_interval([float(n.max() / n.median()) for n in
                                                       (t.float().norm(dim=-1) for t in tokens)])}


def rows_of(tokens: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1, t.shape[-1]) for t in tokens]).double()


def joint_components(image: list[torch.Tensor], captions: list[torch.Tensor], encoder: list[torch.Tensor],
                     threshold: float = 0.8) -> dict:
    """The thesis's count and its checks: components for `threshold` of the variance of the image tokens together
    with their captions' text tokens (the thesis's joint PCA); the same with every token scaled to unit length (then a
    few long tokens cannot hold the variance); the image tokens alone, scaled alike; and the encoder's own tokens of
    the same images, scaled alike (what the adapter's tokens are made from: the reference for their count)."""
    image_rows, text_rows, encoder_rows = rows_of(image), rows_of(captions), rows_of(encoder)
    unit = torch.nn.functional.normalize
    both = torch.cat([image_rows, text_rows.to(image_rows.dtype)])

    def count(x: torch.Tensor) -> int:
        return analysis.components_for_variance(x, threshold)

    return {"threshold": threshold, "image_tokens": len(image_rows), "caption_tokens": len(text_rows),
            "joint": count(both), "joint_normalised": count(unit(both, dim=-1)),
            "image_normalised": count(unit(image_rows, dim=-1)),
            "encoder_normalised": count(unit(encoder_rows, dim=-1))}


def caption_embeddings(vlm, config: TrainConfig, names: list[str]) -> list[torch.Tensor] | None:
    """The LLM's input embeddings of each analysed evaluation image's caption (None for images from a folder)."""
    targets = {s.image_id: s.target for s in gather_samples(config.data.eval, "test") if s.task == "caption"}
    if not all(name in targets for name in names):
        return None
    table = vlm.llm.vocabulary_embeddings().float().cpu()
    return [table[vlm.llm.tokenizer(targets[name], add_special_tokens=False)["input_ids"]] for name in names]


def encoder_tokens(vlm, batches: list[list]) -> list[torch.Tensor]:
    with torch.inference_mode():
        return [row.float().cpu() for batch in batches for row in vlm.features(batch).tokens]


def spectra_summary(adapter, initial=None) -> list[dict]:
    """Each Linear weight's (change's) spectrum, with its effective rank as a share of full rank."""
    rows = []
    for spectrum in analysis.weight_spectra(adapter, initial):
        full = min(spectrum.shape)
        rows.append({"layer": spectrum.name, "shape": list(spectrum.shape), "full_rank": full,
                     "effective_rank": spectrum.effective_rank, "effective_rank_share": spectrum.effective_rank / full,
                     "numerical_rank": spectrum.numerical_rank,
                     "singular_values": [float(v) for v in spectrum.singular_values[:64]]})
    return rows


def initial_adapter(config: TrainConfig, initial: str | None):
    """The adapter before training: `initial`, else the run's step-0 snapshot, else None."""
    from vlm_demo.adapters import load_adapter

    folder = Path(initial) if initial else Path(config.output_dir) / SNAPSHOTS / snapshot_name(0)
    return (load_adapter(folder), str(folder)) if (folder / "config.json").is_file() else (None, None)


def analyse(config: TrainConfig, checkpoint: Checkpoint | str | None = None, images: str | None = None,
            initial: str | None = None, baseline_samples: int = 256, limit: int = 0) -> dict:
    """All three analyses of one checkpoint over a folder or the evaluation split; writes analysis.json."""
    from vlm_demo.pipeline import VisionLanguageModel

    checkpoint = Checkpoint.resolve(checkpoint or Path(config.output_dir) / "adapter")
    vlm = VisionLanguageModel.from_checkpoint(checkpoint, name=config.name)
    pairs = images_to_analyse(config, images, limit)
    batches = [[image for _, image in pairs[start:start + 16]] for start in range(0, len(pairs), 16)]
    tokens = [row.float().cpu() for batch in batches for row in vlm.image_tokens(batch)]
    captions = caption_embeddings(vlm, config, [name for name, _ in pairs]) if images is None else None
    start, start_folder = initial_adapter(config, initial)
    record = {"checkpoint": checkpoint.source, "adapter": vlm.adapter.config.kind, "llm": vlm.llm.name,
              "images": len(pairs), "source": images or "data.eval (test split)",
              "cosines": cosine_summary(tokens, analysis.vocabulary(vlm.llm), baseline_samples),
              "components_for_80_percent": components_summary(tokens),
              "joint_components": joint_components(tokens, captions, encoder_tokens(vlm, batches)) if captions
              else None,
              "spectra": {"of": f"change since {start_folder}" if start is not None else "trained weights",
                          "layers": spectra_summary(vlm.adapter, start)}}
    folder = Path(config.output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "analysis.json").write_text(json.dumps(record, indent=2))
    return record
