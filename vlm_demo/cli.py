"""Command line: `python -m vlm_demo list | caption | chat` (the analysis verbs come from `vlm_demo.analysis.cli`)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path

from vlm_demo.cli_options import UsageError, generation_options, load_vlm, settings_from_args
from vlm_demo.environment import set_defaults
from vlm_demo.images import SUFFIXES, printable_name


def expand_images(paths: list[str]) -> list[Path]:
    """Paths as given, with folders replaced by the image files inside them (sorted)."""
    found: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file()))
        else:
            found.append(path)
    return found


def batches(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def cmd_list(_: argparse.Namespace) -> int:
    from vlm_demo.adapters import ADAPTERS
    from vlm_demo.combos import COMBOS, DEFAULT_COMBO
    from vlm_demo.encoders import ENCODERS
    from vlm_demo.llms import LLMS

    def table(title: str, rows: list[tuple[str, str, str]]) -> None:
        print(f"\n{title}")
        width = max(len(row[0]) for row in rows) + 2
        state_width = max(len(row[1]) for row in rows) + 2
        for name, state, description in rows:
            print(f"  {name:<{width}}{state:<{state_width}}{description}")

    table("Encoders", [(s.name, s.availability(), s.description) for s in ENCODERS.values()])
    table("Adapter families", [(name, "available (code)", (cls.__doc__ or cls.__module__).strip().splitlines()[0])
                               for name, cls in ADAPTERS.items()])
    table("LLMs (or any hub causal-LM id)", [(s.name, s.availability(), s.description) for s in LLMS.values()])
    default = COMBOS[DEFAULT_COMBO]
    table("Combinations", [(name + (" (default)" if combo is default and name != DEFAULT_COMBO else ""),
                            combo.availability(), f"{combo.encoder} -> {combo.adapter} -> {combo.llm}: "
                            f"{combo.description}") for name, combo in COMBOS.items() if name != DEFAULT_COMBO])
    return 0


def cmd_caption(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from vlm_demo.images import ImageError, open_image

    settings = settings_from_args(args)
    if args.batch_size < 1:
        raise UsageError("--batch-size must be at least 1")
    paths = expand_images(args.images)
    if not paths:
        raise UsageError("no image files found in the paths given")
    vlm, failures = None, 0
    progress = tqdm(total=len(paths), unit="img", file=sys.stderr, disable=len(paths) < 2 or args.quiet)
    for chunk in batches(paths, args.batch_size):
        images, names = [], []
        for path in chunk:
            try:
                images.append(open_image(path))
                names.append(printable_name(path))
            except ImageError as error:
                failures += 1
                progress.write(f"error: {printable_name(str(error))}", file=sys.stderr)
        if images:
            if vlm is None:
                vlm = load_vlm(args.combo, args.checkpoint, args.precision)
            for name, caption in zip(names, vlm.caption(images, args.prompt, settings)):
                if args.json:
                    record = {"image": name, "caption": caption, "combo": printable_name(vlm.name),
                              "adapter_trained": vlm.trained}
                    progress.write(json.dumps(record, ensure_ascii=False))
                else:
                    progress.write(f"{name}: {caption}")
        progress.update(len(chunk))
    progress.close()
    return 2 if failures else 0


def cmd_chat(args: argparse.Namespace) -> int:
    from vlm_demo.images import open_image
    from vlm_demo.pipeline import PromptTooLong, check_prompt

    settings = settings_from_args(args)
    image = open_image(args.image)
    vlm = load_vlm(args.combo, args.checkpoint, args.precision)
    history: list[tuple[str, str]] = []
    print(f"Chatting about {printable_name(args.image)} with '{printable_name(vlm.name)}'. "
          "Empty line or /quit ends; /reset forgets the conversation.")
    while True:
        try:
            message = input("you> ").strip()
        except EOFError:
            print()
            return 0
        if message in ("", "/quit", "/exit"):
            return 0
        if message == "/reset":
            history.clear()
            continue
        try:
            check_prompt(message, history)
        except PromptTooLong as error:
            print(f"error: {error} (/reset clears it)", file=sys.stderr)
            continue
        print("vlm> ", end="", flush=True)
        pieces = []
        for piece in vlm.chat(image, message, history, settings):
            pieces.append(piece)
            print(piece, end="", flush=True)
        print()
        history.append((message, "".join(pieces).strip()))


def build_parser() -> argparse.ArgumentParser:
    from vlm_demo.pipeline import DEFAULT_PROMPT

    parser = argparse.ArgumentParser(prog="python -m vlm_demo", description=__doc__)
    verbs = parser.add_subparsers(dest="verb", required=True)
    verbs.add_parser("list", help="encoders, adapters, LLMs and combinations, and whether they are available")
    caption = verbs.add_parser("caption", help="caption images or folders of images")
    caption.add_argument("images", nargs="+", help="image files or folders")
    caption.add_argument("--prompt", default=DEFAULT_PROMPT)
    caption.add_argument("--batch-size", type=int, default=8)
    caption.add_argument("--json", action="store_true", help="one JSON object per line and image")
    caption.add_argument("--quiet", action="store_true", help="no progress bar")
    generation_options(caption)
    chat = verbs.add_parser("chat", help="a terminal conversation about one image")
    chat.add_argument("image")
    generation_options(chat)
    from vlm_demo.analysis import cli as analysis_cli

    analysis_cli.register(verbs)
    from vlm_demo.deploy import upload

    upload.register(verbs)
    return parser


COMMANDS = {"list": cmd_list, "caption": cmd_caption, "chat": cmd_chat}


def main(argv: list[str] | None = None) -> int:
    set_defaults()
    args = build_parser().parse_args(argv)
    from vlm_demo.adapters import CheckpointError
    from vlm_demo.images import ImageError

    try:
        handler = COMMANDS.get(args.verb) or args.handler
        return handler(args)
    except (ImageError, CheckpointError, UsageError, ValueError, OSError) as error:  # OSError: files and the hub
        lines = str(error).strip().splitlines() or [type(error).__name__]
        print(f"error: {printable_name(lines[0])}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
