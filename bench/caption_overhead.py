"""Caption time (preprocess + encoder + adapter + 32 tokens) against text-only generation of 32 tokens."""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vlm_demo.images import open_image  # noqa: E402
from vlm_demo.llms import GenerationSettings  # noqa: E402
from vlm_demo.pipeline import DEFAULT_PROMPT, VisionLanguageModel  # noqa: E402

PHOTO = Path(__file__).resolve().parent.parent / "assets" / "examples" / "chelsea.jpg"
ROUNDS = 7
TOKENS = 32


def main() -> None:
    torch.set_num_threads(max(1, torch.get_num_threads()))
    vlm = VisionLanguageModel.from_combo("default")
    llm = vlm.llm
    settings = GenerationSettings(max_new_tokens=TOKENS, repetition_penalty=1.0)
    exact = {"min_new_tokens": TOKENS}

    def caption() -> None:
        image = open_image(PHOTO)
        inputs = vlm.prepare([image], [DEFAULT_PROMPT])
        llm.model.generate(inputs_embeds=inputs.inputs_embeds, attention_mask=inputs.attention_mask,
                           pad_token_id=llm.tokenizer.pad_token_id, **settings.generate_kwargs(), **exact)

    text_prompt = llm.chat_text([{"role": "user", "content": DEFAULT_PROMPT}])

    def text_only() -> None:
        with torch.inference_mode():
            inputs = llm.splice([text_prompt])
        llm.model.generate(inputs_embeds=inputs.inputs_embeds, attention_mask=inputs.attention_mask,
                           pad_token_id=llm.tokenizer.pad_token_id, **settings.generate_kwargs(), **exact)

    with torch.inference_mode():
        caption(), text_only()  # warm-up
        image_times, text_times = [], []
        for _ in range(ROUNDS):  # interleaved, so machine noise hits both alike
            start = time.perf_counter()
            caption()
            image_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            text_only()
            text_times.append(time.perf_counter() - start)
    image_median, text_median = statistics.median(image_times), statistics.median(text_times)
    prefix = vlm.adapter.num_output_tokens
    print(f"combination: {vlm.name} ({vlm.status}); {prefix} image tokens; {TOKENS} new tokens; {ROUNDS} rounds")
    print(f"caption (open + preprocess + encoder + adapter + generate): median {image_median * 1000:.0f} ms")
    print(f"text-only generate, same prompt without the image:         median {text_median * 1000:.0f} ms")
    print(f"ratio caption / text-only: {image_median / text_median:.3f}  (goal <= 1.15)")


if __name__ == "__main__":
    main()
