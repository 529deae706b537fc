"""Run one training stage (under `accelerate launch` for the tests), recording the samples each process trained on
and the files it wrote under the run's folder.

Usage: python tests/multiprocess_run.py STAGE RECORD_DIR [--resume] key=value ...
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from train.config import load_config  # noqa: E402
from train.stages import registry  # noqa: E402

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT


def record_batches(stage: str, seen: list[list[str]]) -> None:
    """Make the registered stage's loss append each batch's sample keys to `seen`."""
    original = registry.STAGES[stage]

    def build(config, adapter, llm):
        parts = original.build(config, adapter, llm)
        loss = parts.loss

        def recording(batch):
            seen.append([f"{s.image_id}|{s.prompt}|{s.target}" for s in batch.samples])
            return loss(batch)

        parts.loss = recording
        return parts

    registry.STAGES[stage] = registry.Stage(original.needs, build)


def record_writes(folder: Path, writes: list[str]) -> None:
    """Audit hook: files opened for writing, renamed, made or removed under `folder`."""
    root = str(folder.resolve())

    def hook(event: str, args: tuple) -> None:
        if event == "open":
            path, mode, flags = args
            writing = (mode is not None and any(c in str(mode) for c in "wax+")) or (
                mode is None and isinstance(flags, int) and flags & WRITE_FLAGS)
            paths = [path] if writing else []
        elif event in ("os.rename", "os.remove", "os.mkdir", "shutil.rmtree", "os.rmdir"):
            paths = [args[0]] + ([args[1]] if event == "os.rename" else [])
        else:
            return
        for path in paths:
            if isinstance(path, (str, bytes, os.PathLike)):
                text = os.path.abspath(os.fsdecode(path))
                if text.startswith(root):
                    writes.append(f"{event} {os.path.relpath(text, root)}")

    sys.addaudithook(hook)


def main() -> None:
    stage, record_dir, *rest = sys.argv[1:]
    resume = "--resume" in rest
    config = load_config(None, [item for item in rest if item != "--resume"])
    rank = int(os.environ.get("RANK", "0"))
    seen: list[list[str]] = []
    writes: list[str] = []
    record_batches(stage, seen)
    record_writes(Path(config.output_dir), writes)
    from train.loop import train_stage

    train_stage(stage, config, resume=resume, progress=False)
    Path(record_dir).mkdir(parents=True, exist_ok=True)
    (Path(record_dir) / f"rank{rank}.json").write_text(json.dumps({"seen": seen, "writes": writes}))


if __name__ == "__main__":
    main()
