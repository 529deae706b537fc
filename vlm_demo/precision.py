"""Which float precision to compute in: bf16 where the device multiplies bf16 in hardware, fp32 elsewhere; fp16 (with
a gradient scaler) on GPUs without bf16 when asked."""

from __future__ import annotations

import contextlib
from functools import cache
from pathlib import Path

import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
FP16_DEVICES = ("cuda", "mps")  # where accelerate runs fp16 with a GradScaler
CPU_BF16_FLAGS = {"amx_bf16", "avx512_bf16"}


@cache
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags Linux reports in /proc/cpuinfo (empty elsewhere)."""
    path = Path("/proc/cpuinfo")
    if not path.is_file():
        return frozenset()
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_has_bf16_units() -> bool:
    """AMX-BF16 or AVX512-BF16. Without them torch emulates bf16 on the CPU, several times slower than fp32."""
    if cpu_flags() & CPU_BF16_FLAGS:
        return True
    checks = [getattr(torch.cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    return any(check() for check in checks if check is not None)


def bf16_supported(device: torch.device | str) -> bool:
    """Whether bf16 is fast on `device`. Apple GPUs (mps) and other devices stay fp32 until measured there."""
    kind = torch.device(device).type
    if kind == "cuda":
        return torch.cuda.is_bf16_supported()
    if kind == "cpu":
        return cpu_has_bf16_units()
    return False


def resolve_precision(setting: str, device: torch.device | str) -> str:
    """`auto` becomes `bf16` where the device supports it and `fp32` elsewhere; `fp32`/`bf16` are kept as asked."""
    if setting not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got '{setting}'")
    if setting == "auto":
        return "bf16" if bf16_supported(device) else "fp32"
    if setting == "fp16" and torch.device(device).type not in FP16_DEVICES:
        raise ValueError(f"precision 'fp16' trains with a gradient scaler on a GPU ({', '.join(FP16_DEVICES)}), not on "
                         f"'{torch.device(device).type}'; use bf16 or fp32 there")
    return setting


def compute_dtype(precision: str) -> torch.dtype:
    """The dtype frozen weights are held in for a resolved precision."""
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)


def autocast(precision: str, device: torch.device | str) -> contextlib.AbstractContextManager:
    """bf16 autocast for a pass whose weights stay fp32 (the encoder filling the feature cache); no-op for fp32."""
    if precision != "bf16":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
