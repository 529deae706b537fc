"""CLI verbs for the alignment analysis: `neighbors` (nearest-vocabulary cosine table) and `pca` (figure)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vlm_demo import cli_options
from vlm_demo.images import printable_name

FIGURE_SUFFIXES = (".html", ".htm", ".png")


def register(verbs: argparse._SubParsersAction) -> None:
    """Add the `neighbors` and `pca` verbs to the main parser's subcommands."""
    from vlm_demo.combos import DEFAULT_COMBO
    from vlm_demo.pipeline import DEFAULT_PROMPT

    neighbors = verbs.add_parser(
        "neighbors", help="nearest vocabulary tokens (cosine) of each image token, their aggregate and baselines")
    neighbors.add_argument("image")
    neighbors.add_argument("--combo", default=DEFAULT_COMBO, help="combination name (see `list`)")
    neighbors.add_argument("--checkpoint", metavar="DIR",
                           help="an adapter folder or hub id instead of --combo; its config names the encoder and LLM")
    neighbors.add_argument("--top-k", type=int, default=10, help="vocabulary tokens per image token (default 10)")
    neighbors.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    neighbors.add_argument("--baseline-samples", type=int, default=256,
                           help="Gaussian draws for the random-vector baseline (default 256)")
    neighbors.add_argument("--spectrum", action="store_true",
                           help="singular values / effective rank of every Linear weight (automatic for `linear`)")
    neighbors.add_argument("--ablate", action="store_true",
                           help="also caption with each image token replaced by its nearest vocabulary embedding")
    neighbors.add_argument("--prompt", default=DEFAULT_PROMPT, help="prompt for --ablate")
    cli_options.add_settings_options(neighbors)
    neighbors.set_defaults(handler=cmd_neighbors)

    pca = verbs.add_parser("pca", help="PCA plot of image tokens over the LLM vocabulary (.html or .png)")
    pca.add_argument("images", nargs="+")
    pca.add_argument("--combo", default=DEFAULT_COMBO, help="combination name (see `list`)")
    pca.add_argument("--out", default="pca.html", help="FILE.html (interactive) or FILE.png (default pca.html)")
    pca.add_argument("--vocab-sample", type=int, default=10_000,
                     help="vocabulary tokens drawn as the background cloud; 0 = all (the basis always uses all)")
    pca.add_argument("--fit-on", choices=["vocab", "vocab+image"], default="vocab",
                     help="fit the PCA basis on the vocabulary alone or on vocabulary plus these image tokens")
    pca.add_argument("--caption", action="store_true", help="overlay the tokens of each image's generated caption")
    pca.add_argument("--reference", action="append", default=[], metavar="TEXT",
                     help="overlay the tokens of a reference caption (repeatable)")
    pca.add_argument("--checkpoint", action="append", default=[], metavar="DIR",
                     help="plot this adapter checkpoint's tokens instead of the combination's adapter (repeatable, "
                          "e.g. epoch 1 and epoch 4 of one adapter); the first one's config names the encoder and LLM")
    pca.add_argument("--prompt", default=DEFAULT_PROMPT, help="prompt for --caption")
    cli_options.add_settings_options(pca)
    pca.set_defaults(handler=cmd_pca)


def _describe(vlm) -> str:
    return (f"combination '{printable_name(vlm.name)}' "
            f"({vlm.encoder.name} -> {vlm.adapter.config.kind} -> {vlm.llm.name}), "
            f"{'trained adapter' if vlm.trained else 'UNTRAINED adapter (random weights)'}")


def neighbors_record(vlm, image, name: str, top_k: int, baseline_samples: int = 256, spectrum: bool = False,
                     ablate: bool = False, prompt: str | None = None, settings=None):
    """Everything `neighbors` reports: (the JSON-ready dict printed by --json, the NeighborTable with labels)."""
    from vlm_demo import analysis

    vocab = analysis.vocabulary(vlm.llm)
    tokens = vlm.image_tokens([image])[0]
    table = analysis.neighbor_table(tokens, vocab, top_k)
    measured, stderr = analysis.random_baseline(vocab, baseline_samples)
    record = {
        "image": name, "combo": vlm.name, "encoder": vlm.encoder.name, "adapter": vlm.adapter.config.kind,
        "llm": vlm.llm.name, "adapter_trained": vlm.trained, "top_k": top_k, "vocabulary_size": len(vocab),
        "tokens": [{"index": i, "norm": round(norm, 4), "neighbors": [n.to_dict() for n in row]}
                   for i, (row, norm) in enumerate(zip(table.per_token, table.norms))],
        "aggregate": {"method": "best cosine over all image tokens per vocabulary token",
                      "neighbors": [n.to_dict() for n in table.aggregate]},
        "random_baseline": {"monte_carlo": round(measured, 6), "stderr": round(stderr, 6), "samples": baseline_samples,
                            "closed_form": round(analysis.random_baseline_closed_form(*vocab.embeddings.shape), 6)},
        "norm_ratio": round(analysis.norm_ratio(tokens, vocab), 4),
        "vocabulary_mean_norm": round(float(vocab.norms.mean()), 4),
        "components_for_80_percent": analysis.components_for_variance(tokens),
    }
    if spectrum or vlm.adapter.config.kind == "linear":
        record["spectra"] = [{"layer": s.name, "shape": list(s.shape), "effective_rank": round(s.effective_rank, 2),
                              "numerical_rank": s.numerical_rank, "singular_values": [round(float(v), 5) for v in
                                                                                      s.singular_values]}
                             for s in analysis.weight_spectra(vlm.adapter)]
    if ablate:
        result = analysis.nearest_token_ablation(vlm, [image], prompt, settings)[0]
        record["ablation"] = {"caption": result.caption, "nearest_token_caption": result.ablated,
                              "replacement_token_ids": result.replaced_ids}
    return record, table


def _short(label: str, width: int = 20) -> str:
    return label if len(label) <= width else label[:width - 1] + "…"


def print_table(record: dict, table, description: str) -> None:
    """The human-readable form of a neighbors record (labels from its NeighborTable)."""
    baseline, k = record["random_baseline"], record["top_k"]
    print(f"{record['image']}: {description}")
    print(f"{len(record['tokens'])} image tokens vs {record['vocabulary_size']:,} vocabulary tokens, cosine similarity")
    print(f"random Gaussian vector's best cosine against this vocabulary: {baseline['monte_carlo']:.4f} "
          f"± {baseline['stderr']:.4f} measured ({baseline['samples']} draws), {baseline['closed_form']:.4f} "
          f"closed form (independent-rows approximation)")
    mean_norm = sum(t["norm"] for t in record["tokens"]) / len(record["tokens"])
    print(f"image-token norm {mean_norm:.2f} on average = {record['norm_ratio']:.2f}x the vocabulary mean "
          f"{record['vocabulary_mean_norm']:.2f}; {record['components_for_80_percent']} principal components hold 80% "
          f"of the image tokens' variance")
    print(f"\nAggregate over all {len(record['tokens'])} image tokens (best cosine per vocabulary token), top {k}:")
    print(f"  {'rank':>4}  {'cosine':>7}  {'token':<20} {'id':>6}  {'best image token':>16}  {f'in top {k} of':>12}")
    for rank, entry in enumerate(table.aggregate, start=1):
        print(f"  {rank:>4}  {entry.cosine:>7.4f}  {_short(entry.label):<20} {entry.token_id:>6}  "
              f"{entry.image_token:>16}  {entry.hits:>6} tokens")
    print(f"\nPer image token, top {k} (cosine token; spaces shown as \u2423):")
    for index, (row, norm) in enumerate(zip(table.per_token, table.norms)):
        cells = [f"{n.cosine:.3f} {_short(n.label)}" for n in row]
        for start in range(0, len(cells), 5):
            head = f"  #{index:<3} norm {norm:6.2f} |" if start == 0 else " " * 19 + "|"
            print(head, "   ".join(cells[start:start + 5]))
    for spectrum in record.get("spectra", []):
        top = ", ".join(f"{v:.3g}" for v in spectrum["singular_values"][:5])
        print(f"\nweight {spectrum['layer']} {spectrum['shape'][0]}x{spectrum['shape'][1]}: effective rank "
              f"{spectrum['effective_rank']:.1f} (entropy, Roy & Vetterli 2007), numerical rank "
              f"{spectrum['numerical_rank']}; largest singular values {top}")
    if "ablation" in record:
        print(f"\ncaption with the image tokens:           {record['ablation']['caption']}")
        print(f"caption with nearest vocabulary tokens:  {record['ablation']['nearest_token_caption']}")


def cmd_neighbors(args: argparse.Namespace) -> int:
    from vlm_demo.images import open_image

    if args.top_k < 1:
        raise ValueError("--top-k must be at least 1")
    if args.baseline_samples < 1:
        raise ValueError("--baseline-samples must be at least 1")
    settings = cli_options.settings_from_args(args)
    image = open_image(args.image)
    vlm = cli_options.load_vlm(args.combo, args.checkpoint)
    record, table = neighbors_record(vlm, image, printable_name(args.image), args.top_k, args.baseline_samples,
                                     args.spectrum, args.ablate, args.prompt, settings)
    if args.json:
        print(json.dumps(record, ensure_ascii=False))
    else:
        print_table(record, table, _describe(vlm))
    return 0


def cmd_pca(args: argparse.Namespace) -> int:
    from vlm_demo.analysis import figures
    from vlm_demo.images import open_image

    out = Path(args.out)
    if out.suffix.lower() not in FIGURE_SUFFIXES:
        raise ValueError(f"--out {out}: the figure can be written as .html or .png")
    if not out.parent.is_dir():
        raise ValueError(f"--out {out}: the folder {out.parent} does not exist")
    if args.vocab_sample < 0:
        raise ValueError("--vocab-sample must be 0 (all) or a positive number")
    settings = cli_options.settings_from_args(args)
    images = [open_image(path) for path in args.images]
    names = [printable_name(Path(path).name) for path in args.images]
    if len(set(names)) < len(names):
        names = [printable_name(path) for path in args.images]
    vlm = cli_options.load_vlm(args.combo, args.checkpoint[0] if args.checkpoint else None)
    if args.checkpoint:
        groups = figures.checkpoint_tokens(vlm, args.checkpoint, images, names)
        status = "adapter checkpoints: " + ", ".join(printable_name(Path(c).name) for c in args.checkpoint)
    else:
        groups, status = dict(zip(names, vlm.image_tokens(images))), None
    captions = {}
    if args.caption:
        for name, text in zip(names, vlm.caption(images, args.prompt, settings)):
            captions[f"caption of {name}"] = text
            print(f"caption of {name}: {text}")
    for index, text in enumerate(args.reference, start=1):
        captions["reference caption" + (f" {index}" if len(args.reference) > 1 else "")] = text
    view = figures.pca_view(vlm, groups, captions, args.fit_on, args.vocab_sample, status=status)
    figures.save_figure(view, out)
    print(f"{view.title}; {view.status}")
    print(figures.notes(view))
    print(f"wrote {printable_name(out)}")
    return 0
