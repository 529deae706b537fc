"""Inference precision: greedy generation tokens/s with the LLM in fp32 and in bf16, batch 1 and batch 8."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vlm_demo.combos import DEFAULT_COMBO, get_combo  # noqa: E402
from vlm_demo.encoders import build_encoder  # noqa: E402
from vlm_demo.llms import load_llm  # noqa: E402
from vlm_demo.pipeline import VisionLanguageModel  # noqa: E402
from vlm_demo.precision import bf16_supported  # noqa: E402

NEW_TOKENS = 32
REPEATS = 3


def seconds(vlm: VisionLanguageModel, inputs) -> float:
    """One greedy generation of exactly NEW_TOKENS tokens per row, with the combination's LoRA."""
    start = time.perf_counter()
    with torch.inference_mode(), vlm.llm._lora_gate.using(vlm.lora):
        vlm.llm.model.generate(inputs_embeds=inputs.inputs_embeds, attention_mask=inputs.attention_mask,
                               pad_token_id=vlm.llm.tokenizer.pad_token_id, max_new_tokens=NEW_TOKENS,
                               min_new_tokens=NEW_TOKENS, do_sample=False, repetition_penalty=1.1)
    return time.perf_counter() - start


def main() -> None:
    encoder = build_encoder(get_combo(DEFAULT_COMBO).encoder)
    vlms = {name: VisionLanguageModel.from_combo("default", llm=load_llm("smollm2-135m-instruct", dtype=dtype),
                                                 encoder=encoder)
            for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))}
    images = [Image.open(path) for path in sorted((ROOT / "assets" / "examples").glob("*.*g"))][:8]
    units = "has bf16 units" if bf16_supported("cpu") else "has no AMX-BF16/AVX512-BF16 units"
    print(f"default combination, greedy, {NEW_TOKENS} new tokens a row, best of {REPEATS} (fp32 and bf16 runs "
          f"interleaved); this CPU {units}, {torch.get_num_threads()} threads")
    for batch in (1, 8):
        prepared = {name: vlm.prepare(images[:batch], ["Describe this image."] * batch) for name, vlm in vlms.items()}
        best = {name: float("inf") for name in vlms}
        for _ in range(REPEATS):
            for name, vlm in vlms.items():
                best[name] = min(best[name], seconds(vlm, prepared[name]))
        rates = {name: NEW_TOKENS * batch / value for name, value in best.items()}
        print(f"batch {batch}: fp32 {rates['fp32']:6.1f} tokens/s, bf16 {rates['bf16']:6.1f} tokens/s "
              f"(bf16 / fp32 = {rates['bf16'] / rates['fp32']:.2f})")
    print("the app loads the LLM in fp32 (load_llm's default)")


if __name__ == "__main__":
    main()
