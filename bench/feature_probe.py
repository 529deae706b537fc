"""Which EfficientNet-Lite0 features carry colour and shape: probe accuracy on single-object synthetic shapes.

A per-token Linear-GELU-Linear probe, max-pooled over the tokens, is trained with the class labels on
train-split images and scored on test-split images, for each layout the MLP adapter can be given, and with
`python bench/feature_probe.py [--encoder NAME] FOLDER ...` for what trained adapters (any family) hand the
LLM: their output tokens (how much colour and shape a training stage kept).
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from train.data.shapes import COLOURS, SHAPES, shapes_samples  # noqa: E402
from train.features import FeatureCache  # noqa: E402
from vlm_demo.adapters import build_adapter, load_adapter  # noqa: E402
from vlm_demo.encoders import EncoderOutput, build_encoder  # noqa: E402

LAYOUTS = {  # name -> MLP adapter options (the adapter's input is what the probe sees)
    "last layer only": {},
    "+ stages 0,1 averaged": {"stage_features": [0, 1]},
    "+ stage 0 as 4x4 sub-grid, stage 1 as 2x2 (shipped)": {"stage_features": [0, 1], "stage_subgrid": [4, 2]},
}


def split(encoder, cache: FeatureCache, name: str, images: int) -> tuple[EncoderOutput, torch.Tensor, torch.Tensor]:
    samples = [s for s in shapes_samples(name, images, vqa_per_image=0) if len(s.meta["objects"]) == 1]
    features, rows = cache.features(samples)
    features = features[torch.tensor([rows[s.image_id] for s in samples])].to("cpu", torch.float32)
    colours = torch.tensor([list(COLOURS).index(s.meta["objects"][0]["colour"]) for s in samples])
    shapes = torch.tensor([SHAPES.index(s.meta["objects"][0]["shape"]) for s in samples])
    return features, colours, shapes


def adapter_inputs(encoder, options: dict, features: EncoderOutput) -> torch.Tensor:
    """The concatenated per-token input the MLP adapter would see, standardised by the probe itself."""
    adapter = build_adapter("mlp", encoder=encoder.name, token_dim=encoder.embed_dim,
                            num_encoder_tokens=encoder.num_tokens, stage_dims=encoder.stage_dims, llm="probe",
                            llm_hidden=8, **options)
    captured = []
    adapter.fc1.register_forward_pre_hook(lambda module, args: captured.append(args[0]))
    with torch.no_grad():
        adapter(features)
    return captured[0]


def probe(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
          classes: int, epochs: int = 40) -> float:
    torch.manual_seed(0)
    mean, std = train_x.mean((0, 1)), train_x.std((0, 1)) + 1e-5
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    model = nn.Sequential(nn.Linear(train_x.shape[-1], 256), nn.GELU(), nn.Linear(256, classes))
    optimizer = torch.optim.AdamW(model.parameters(), 1e-3, weight_decay=0.05)
    for _ in range(epochs):
        order = torch.randperm(len(train_x))
        for start in range(0, len(order), 64):
            batch = order[start:start + 64]
            loss = F.cross_entropy(model(train_x[batch]).max(dim=1).values, train_y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        return (model(test_x).max(dim=1).values.argmax(-1) == test_y).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("adapters", nargs="*", help="trained adapter folders to probe the output tokens of")
    parser.add_argument("--encoder", default="efficientnet-lite0", help="the encoder the adapters were trained on")
    args = parser.parse_args()
    encoder = build_encoder(args.encoder)
    cache = FeatureCache(encoder, keep_stages=True)
    train_features, train_colour, train_shape = split(encoder, cache, "train", 3000)
    test_features, test_colour, test_shape = split(encoder, cache, "test", 500)
    print(f"single-object images: {len(train_colour)} train, {len(test_colour)} test; "
          f"chance: colour {1 / len(COLOURS):.3f}, shape {1 / len(SHAPES):.3f}")
    if args.adapters:
        inputs = {folder: partial(adapter_outputs, load_adapter(folder).eval()) for folder in args.adapters}
    else:
        inputs = {name: partial(adapter_inputs, encoder, options) for name, options in LAYOUTS.items()}
    for name, make in inputs.items():
        train_x, test_x = make(train_features), make(test_features)
        colour = probe(train_x, train_colour, test_x, test_colour, len(COLOURS))
        shape = probe(train_x, train_shape, test_x, test_shape, len(SHAPES))
        print(f"{name:55s} width {train_x.shape[-1]:5d}: colour {colour:.3f}  shape {shape:.3f}", flush=True)


def adapter_outputs(adapter, features: EncoderOutput) -> torch.Tensor:
    """A trained adapter's output tokens (what the LLM is given)."""
    with torch.no_grad():
        return adapter(features).float()


if __name__ == "__main__":
    main()
