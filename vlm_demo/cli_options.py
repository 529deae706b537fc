"""What the command lines share (`python -m vlm_demo` and its analysis verbs): generation options, checked
settings, loading the combination, and the one-line usage error."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from vlm_demo.images import printable_name

if TYPE_CHECKING:
    from vlm_demo.checkpoint import Checkpoint
    from vlm_demo.llms import GenerationSettings
    from vlm_demo.pipeline import VisionLanguageModel


class UsageError(Exception):
    """A problem with what the user asked for: printed as one line, exit status 2."""


def add_settings_options(parser: argparse.ArgumentParser) -> None:
    """--max-new-tokens, --temperature, --top-p and --seed, with GenerationSettings' defaults."""
    from vlm_demo.llms import GenerationSettings

    defaults = GenerationSettings()
    parser.add_argument("--max-new-tokens", type=int, default=defaults.max_new_tokens)
    parser.add_argument("--temperature", type=float, default=defaults.temperature, help="0 = greedy")
    parser.add_argument("--top-p", type=float, default=defaults.top_p)
    parser.add_argument("--seed", type=int, default=defaults.seed)


def settings_from_args(args: argparse.Namespace) -> GenerationSettings:
    """The generation settings given on the command line, checked (a bad value is a one-line error)."""
    from vlm_demo.llms import GenerationSettings

    return GenerationSettings(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                              top_p=args.top_p, seed=args.seed).check()


def load_vlm(combo: str, checkpoint: Checkpoint | str | None = None, precision: str = "auto") -> VisionLanguageModel:
    """The combination (or the checkpoint, a folder or hub id resolved once by `from_checkpoint`, with the encoder and
    LLM it names), its LLM in `precision`; says so when the adapter is random."""
    from vlm_demo.pipeline import VisionLanguageModel

    vlm = (VisionLanguageModel.from_checkpoint(checkpoint, precision=precision) if checkpoint
           else VisionLanguageModel.from_combo(combo, precision=precision))
    if not vlm.trained:
        print(f"note: combination '{printable_name(vlm.name)}' uses an {vlm.status}", file=sys.stderr)
    return vlm


def generation_options(parser: argparse.ArgumentParser) -> None:
    """--combo, --checkpoint, --precision and the generation settings."""
    from vlm_demo.combos import DEFAULT_COMBO
    from vlm_demo.llms.quantize import LLM_PRECISIONS

    parser.add_argument("--combo", default=DEFAULT_COMBO, help="combination name (see `list`)")
    parser.add_argument("--checkpoint", help="an adapter folder or hub id; its config names the encoder and LLM")
    parser.add_argument("--precision", choices=LLM_PRECISIONS, default="auto",
                        help="the LLM's weights: auto (the app's default on this device), fp32, bf16 or int8")
    add_settings_options(parser)
