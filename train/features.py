"""Frozen-encoder feature cache: tokens computed once per (encoder, its weights, preprocessing, precision, image
content); a fine-tuned encoder has other weights, so it never reads the features of the one it started from."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from train.data.base import Sample, image_digest
from vlm_demo.encoders import EncoderOutput, VisionEncoder
from vlm_demo.precision import autocast
from vlm_demo.sources import cache_dir


def weights_digest(module: torch.nn.Module) -> str:
    """Checksum of every parameter and buffer (names, shapes and bytes) of a module."""
    digest = hashlib.blake2b(digest_size=12)
    for name, tensor in sorted(module.state_dict().items()):
        data = tensor.detach().cpu().contiguous()
        digest.update(f"{name}{tuple(data.shape)}{data.dtype}".encode())
        digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return digest.hexdigest()


def cache_precision(precision: str) -> str:
    """The precision features are computed in for a run at `precision` (fp16 runs read fp32 features)."""
    return "bf16" if precision == "bf16" else "fp32"


class FeatureCache:
    """Stores each image's features as fp16 safetensors under a folder named by encoder and preprocessing."""

    def __init__(self, encoder: VisionEncoder, keep_stages: bool = False, root: Path | None = None,
                 precision: str = "fp32") -> None:
        self.encoder = encoder
        self.keep_stages = keep_stages
        self.precision = precision  # a resolved precision: the encoder runs under bf16 autocast for "bf16"
        base = (root or cache_dir() / "features") / encoder.name
        self.weights = weights_digest(encoder)

        def folder(stages: bool) -> Path:
            text = (f"{encoder.preprocessing_id}|stages={stages}|weights={self.weights}"
                    + ("|bf16" if precision == "bf16" else ""))
            return base / hashlib.sha1(text.encode()).hexdigest()[:12]

        self.folder = folder(keep_stages)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.superset = None if keep_stages else folder(True)  # entries with stage maps serve tokens too
        self.hits = self.misses = 0

    def _path(self, digest: str) -> Path:
        path = self.folder / digest[:2] / f"{digest}.safetensors"
        if self.superset is not None and not path.is_file():
            wider = self.superset / digest[:2] / f"{digest}.safetensors"
            return wider if wider.is_file() else path
        return path

    def _save(self, digest: str, output: EncoderOutput) -> None:
        tensors = {"tokens": output.tokens[0], "pooled": output.pooled[0]}
        tensors.update({f"stage{i}": stage[0] for i, stage in enumerate(output.stages)})
        path = self._path(digest)
        path.parent.mkdir(exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        os.close(handle)
        save_file({k: v.to(torch.float16).contiguous() for k, v in tensors.items()}, temporary)
        os.replace(temporary, path)

    def _load(self, digest: str) -> EncoderOutput:
        tensors = load_file(self._path(digest))
        count = len([k for k in tensors if k.startswith("stage")]) if self.keep_stages else 0
        stages = [tensors[f"stage{i}"][None] for i in range(count)]
        return EncoderOutput(tensors["tokens"][None], tensors["pooled"][None], stages)

    def features(self, samples: list[Sample], batch_size: int = 32, progress: bool = True
                 ) -> tuple[EncoderOutput, dict[str, int]]:
        """Features of every distinct image among `samples` (fp16), and image_id -> row."""
        unique: dict[str, Sample] = {}
        for sample in samples:
            unique.setdefault(sample.image_id, sample)
        rows: dict[str, int] = {}
        outputs: list[EncoderOutput | None] = []
        pending: list[tuple[int, str, object]] = []

        def flush() -> None:
            if not pending:
                return
            with autocast(self.precision, next(self.encoder.parameters()).device):
                computed = self.encoder([image for _, _, image in pending])
            for offset, (row, digest, _) in enumerate(pending):
                one = EncoderOutput(computed.tokens[offset:offset + 1], computed.pooled[offset:offset + 1],
                                    [s[offset:offset + 1] for s in computed.stages] if self.keep_stages else [])
                self._save(digest, one)
                outputs[row] = one.to("cpu", torch.float16)
            pending.clear()

        for image_id, sample in tqdm(unique.items(), desc=f"features ({self.encoder.name})", unit="img",
                                     disable=not progress, leave=False):
            image = sample.load_image()
            digest = image_digest(image)
            rows[image_id] = len(outputs)
            if self._path(digest).is_file():
                self.hits += 1
                outputs.append(self._load(digest))
            else:
                self.misses += 1
                outputs.append(None)
                pending.append((rows[image_id], digest, image))
                if len(pending) >= batch_size:
                    flush()
        flush()
        return EncoderOutput.cat(outputs), rows
