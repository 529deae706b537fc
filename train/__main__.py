"""`python -m train align|caption|decoder|eval|ship|push --config FILE.toml [key=value ...]`, `python -m train
analyse ...`, `python -m train study [CLAIM ...]`, `python -m train leaderboard [--check]` (README.md's table of
the shipped adapters).

Several processes (GPUs): `accelerate launch --multi_gpu --num_processes N -m train caption --config ...`."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from train.config import ConfigError, load_config
from vlm_demo.environment import set_defaults


def main(argv: list[str] | None = None) -> int:
    set_defaults()
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["study"]:
        from train.study.cli import main as study

        return study(argv[1:])
    if argv[:1] == ["leaderboard"]:
        from train.leaderboard import main as leaderboard

        return leaderboard(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m train", description=__doc__)
    parser.add_argument("stage", choices=["align", "caption", "decoder", "eval", "analyse", "ship", "push"],
                        help="align: no LLM forward (EMD or distillation); caption: CE through the LLM; "
                        "decoder: a tinylm adapter's LM decodes captions without the LLM (PaLM2-VAdapter stage 1); "
                        "eval: held-out metrics; analyse: cosines, spectra and components over many images; "
                        "ship: copy to assets/adapters/ with a model card; "
                        "push: upload to the hub as --repo-id")
    parser.add_argument("--config", help="TOML file (see train/configs/)")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in output_dir")
    parser.add_argument("--checkpoint", help="eval, analyse: adapter folder (default: output_dir/adapter)")
    parser.add_argument("--images", help="analyse: a folder of images instead of data.eval's test split")
    parser.add_argument("--initial", help="analyse: the adapter before training (default: snapshots/step-0000000)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--repo-id", help="push: the hub repo to create or update (owner/name)")
    parser.add_argument("--private", action="store_true", help="push: create the repo private")
    parser.add_argument("overrides", nargs="*", help="key=value, e.g. train.lr=1e-3 data.train='[{name=\"digits\"}]'")
    args = parser.parse_intermixed_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        config = load_config(args.config, args.overrides)
        if args.stage == "push":
            from train.push import push

            if not args.repo_id:
                raise ValueError("push needs --repo-id owner/name")
            print(push(config, args.repo_id, private=args.private))
        elif args.stage == "ship":
            from train.card import ship

            print(ship(config))
        elif args.stage == "analyse":
            from train.analyse import analyse

            print(json.dumps(analyse(config, args.checkpoint, args.images, args.initial), indent=2))
        elif args.stage == "eval":
            from train.evaluate import evaluate

            print(json.dumps(evaluate(config, args.checkpoint, progress=not args.quiet), indent=2))
        else:
            from train.loop import train_stage

            final = train_stage(args.stage, config, resume=args.resume, progress=not args.quiet)
            if os.environ.get("RANK", "0") == "0":  # one line, not one per process
                print(final)
    except (ConfigError, ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
