"""The precision an LLM's weights are held in for inference: fp32, bf16, or int8 weight-only Linear layers (per-channel
scales; each product takes its input in bf16 and returns the caller's dtype), which read a quarter of fp32's bytes
per decoded token.

LoRAs stay switchable by name on an int8 LLM: peft wraps each quantised Linear and adds its LoRA in fp32 beside it,
so one quantised copy serves every LoRA. The input embeddings stay fp32 (a lookup reads a few rows); the LM head,
tied to them in SmolLM2, gets an int8 copy of its own. torchao 0.18's int8 weight-only tensor converts the whole
int8 weight to the input's dtype before every product in eager mode (its int8_tensor.py), more bytes moved than fp32
itself, and torch.ao.quantization's dynamic int8 Linear is refused by peft's LoRA; so this module calls torch's
int8-weight kernel (aten._weight_int8pack_mm) directly.
"""

from __future__ import annotations

import os

import torch
from torch import nn

LLM_PRECISIONS = ("auto", "fp32", "bf16", "int8")
PRECISION_ENV = "VLM_DEMO_LLM_PRECISION"
# torch's int8-weight kernel is vectorised for bf16 inputs; with fp32 ones it ran 10x slower than an fp32 Linear here
KERNEL_DTYPE = torch.bfloat16
CPU_DEFAULT = "fp32"  # what `auto` means on a CPU: see README "Precision and speed" for the measured figures


def resolve_llm_precision(setting: str | None, device: torch.device | str | None = None) -> str:
    """`auto` (or None) becomes VLM_DEMO_LLM_PRECISION if set, else CPU_DEFAULT on a CPU and fp32 elsewhere."""
    setting = setting or "auto"
    if setting == "auto":
        setting = os.environ.get(PRECISION_ENV) or "auto"
    if setting not in LLM_PRECISIONS:
        raise ValueError(f"LLM precision must be one of {', '.join(LLM_PRECISIONS)}, got '{setting}'")
    if setting == "auto":
        return CPU_DEFAULT if torch.device(device or "cpu").type == "cpu" else "fp32"
    return setting


def weight_dtype(precision: str) -> torch.dtype:
    """The dtype weights are loaded in before any quantisation (int8 quantises fp32 weights)."""
    return torch.bfloat16 if precision == "bf16" else torch.float32


class Int8Linear(nn.Linear):
    """A Linear layer whose weight is int8 with one scale per output channel (symmetric, round to nearest); the
    product runs in torch's int8-weight CPU kernel on bf16 inputs (outputs return to the caller's dtype). Being an
    nn.Linear, peft wraps it with a LoRA like any other."""

    def __init__(self, linear: nn.Linear) -> None:
        nn.Module.__init__(self)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        weight = linear.weight.detach().float()
        scale = weight.abs().amax(dim=1).clamp(min=1e-12) / 127
        self.register_buffer("weight", (weight / scale[:, None]).round().clamp(-127, 127).to(torch.int8))
        self.register_buffer("scale", scale)
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1]).to(KERNEL_DTYPE).contiguous()
        out = torch.ops.aten._weight_int8pack_mm(flat, self.weight, self.scale.to(KERNEL_DTYPE)).to(x.dtype)
        if self.bias is not None:
            out = out + self.bias.to(out.dtype)
        return out.reshape(*x.shape[:-1], self.out_features)


def quantize_int8(model: nn.Module) -> nn.Module:
    """Replace every plain Linear layer (LoRA layers excepted) by an Int8Linear, the LM head included; the input
    embeddings stay fp32 (tied ones are untied)."""
    if hasattr(model.config, "tie_word_embeddings"):
        model.config.tie_word_embeddings = False  # the LM head gets an int8 copy; no later re-tie may undo it
    targets = [(name, module) for name, module in model.named_modules()
               if type(module) is nn.Linear and "lora_" not in name]
    for name, module in targets:
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, Int8Linear(module))
    return model


def is_int8(model: nn.Module) -> bool:
    """Whether `quantize_int8` has quantised this model."""
    return any(isinstance(module, Int8Linear) for module in model.modules())
