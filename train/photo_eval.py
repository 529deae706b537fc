"""Score shipped checkpoints on the everyday photos' test split, once each, without re-running their other benchmarks:
the photo figure in eval.json (beside the encoder's own top-1 and top-3 labels on the same photos) and the photo rows
of eval_predictions.jsonl are replaced, then the card is rewritten from the records.
`python -m train.photo_eval assets/adapters/NAME ... | --all` (folders already scored on the test split are skipped
unless --again); `--dev FOLDER ...` prints any checkpoint's dev-split score and captions instead, writing nothing."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from train.card import regenerate
from train.data import load_dataset
from train.evaluate import answer_all, compute_metrics, names_object, photo_baselines, prediction_rows
from vlm_demo.cards import read_json
from vlm_demo.checkpoint import Checkpoint
from vlm_demo.combos import ADAPTERS_DIR, shipped_folders
from vlm_demo.pipeline import VisionLanguageModel

MAX_NEW_TOKENS, BATCH_SIZE = 24, 16  # as every shipped config's [eval]


def scored_on_test(folder: Path) -> bool:
    return read_json(folder / "eval.json").get("photos_object_named", {}).get("split") == "test"


def evaluate_photos(folder: Path, progress: bool = True) -> dict:
    """The checkpoint's photo figure on the test split, written into its records and card; returns the figure."""
    samples = load_dataset("photos", "test")
    vlm = VisionLanguageModel.from_checkpoint(Checkpoint.resolve(folder, local_only=True))
    answers = answer_all(vlm, samples, MAX_NEW_TOKENS, BATCH_SIZE, progress)
    figure = (compute_metrics(samples, answers)["photos_object_named"] | {"split": "test"}
              | photo_baselines(vlm.encoder, samples))
    evaluation = json.loads((folder / "eval.json").read_text())
    (folder / "eval.json").write_text(json.dumps(evaluation | {"photos_object_named": figure}, indent=2))
    predictions = folder / "eval_predictions.jsonl"
    rows = [json.loads(line) for line in predictions.read_text().splitlines()] if predictions.is_file() else []
    rows = [row for row in rows if row["task"] != "name"] + prediction_rows(samples, answers)
    predictions.write_text("".join(json.dumps(row) + "\n" for row in rows))
    regenerate(folder)
    return figure


def add_baselines(folder: Path) -> dict:
    """The encoder's own baselines on the test split written beside a photo figure that lacks some (a property of the
    encoder on the same photos: the checkpoint's captions are not made again); the card is rewritten."""
    evaluation = read_json(folder / "eval.json")
    figure = evaluation["photos_object_named"]
    encoder = Checkpoint.resolve(folder, local_only=True).vision_encoder()
    figure = figure | {key: value for key, value in photo_baselines(encoder, load_dataset("photos", "test")).items()
                       if key not in figure}
    (folder / "eval.json").write_text(json.dumps(evaluation | {"photos_object_named": figure}, indent=2))
    regenerate(folder)
    return figure


def print_dev_scores(folder: Path) -> None:
    """Any checkpoint (a run's adapter too) on the dev split, the split recipes are chosen on: its score beside the
    encoder's, and every caption; nothing is written."""
    samples = load_dataset("photos", "dev")
    vlm = VisionLanguageModel.from_checkpoint(Checkpoint.resolve(folder, local_only=True))
    answers = answer_all(vlm, samples, MAX_NEW_TOKENS, BATCH_SIZE, progress=False)
    named = [names_object(answer, sample.meta["keywords"]) for sample, answer in zip(samples, answers)]
    baselines = ", ".join(f"{key.split('_')[1]} {value:.0%}" for key, value in
                          photo_baselines(vlm.encoder, samples).items())
    print(f"{folder}: names the main object in {sum(named)} of {len(named)} dev photos"
          + (f" (the encoder's {baselines})" if baselines else ""))
    for sample, answer, hit in zip(samples, answers, named):
        print(f"  {'yes' if hit else 'no ':3} {sample.image_id.removeprefix('photos-'):16} {answer}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.photo_eval", description=__doc__.split("\n")[0])
    parser.add_argument("folders", nargs="*", type=Path, help="shipped adapter folders (assets/adapters/NAME)")
    parser.add_argument("--all", action="store_true", help=f"every folder under {ADAPTERS_DIR} scored on photos")
    parser.add_argument("--again", action="store_true", help="score folders already scored on the test split too")
    parser.add_argument("--baselines", action="store_true",
                        help="only add the encoder's missing baselines (e.g. in everyday words) to folders already "
                             "scored on the test split; their captions are not made again")
    parser.add_argument("--dev", action="store_true",
                        help="score any checkpoint folders on the dev split instead (for choosing recipes; prints "
                             "every caption, writes nothing)")
    args = parser.parse_args(argv)
    if args.dev:
        for folder in args.folders:
            print_dev_scores(folder)
        return 0
    folders = args.folders or []
    if args.all:
        folders += [f for f in shipped_folders() if "photos_object_named" in read_json(f / "eval.json")]
    if not folders:
        parser.error("name a folder or give --all")
    for folder in folders:
        if args.baselines:
            if scored_on_test(folder):
                print(f"{folder.name}: {add_baselines(folder)}", flush=True)
            continue
        if scored_on_test(folder) and not args.again:
            print(f"{folder.name}: already scored on the test split (--again to score it again)")
            continue
        figure = evaluate_photos(folder)
        baselines = ", ".join(f"{key.split('_')[1]} {value:.0%}" for key, value in figure.items()
                              if key.startswith("encoder_"))
        print(f"{folder.name}: names the main object in {figure['score']:.0%} of {figure['count']} test photos"
              + (f" (the encoder's {baselines})" if baselines else ""), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
