"""`python -m train leaderboard [--check]`: write the leaderboard of the shipped adapters (assets/adapters/) into
README.md between its leaderboard markers, or with --check only say whether the table there is out of date."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vlm_demo.leaderboard import leaderboard, markdown, with_table

README = Path(__file__).resolve().parent.parent / "README.md"


def current_readme(readme: Path = README, root: Path | None = None) -> str:
    """README.md's text with the leaderboard table as the shipped adapters make it now."""
    return with_table(readme.read_text(encoding="utf-8"), markdown(leaderboard(root)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train leaderboard", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if README.md's table is out of date")
    parser.add_argument("--readme", type=Path, default=README, help="the file to update (default: README.md)")
    args = parser.parse_args(argv)
    try:
        text = current_readme(args.readme)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if text == args.readme.read_text(encoding="utf-8"):
        print(f"{args.readme}: the leaderboard is up to date")
        return 0
    if args.check:
        print(f"{args.readme}: the leaderboard is out of date; run `python -m train leaderboard`", file=sys.stderr)
        return 1
    args.readme.write_text(text, encoding="utf-8")
    print(f"{args.readme}: leaderboard updated")
    return 0
