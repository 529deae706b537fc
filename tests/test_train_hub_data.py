"""Caption data sets by hub id through `datasets`, run on a tiny local folder in the hub layout (data/<split>-*.parquet
with an image column and caption_0..caption_4, as on the hub); `datasets` is imported only when one is named."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from tests.test_train_stages import _overrides, _run_stage
from train.config import load_config
from train.data import load_dataset
from train.data.hub import caption_columns

ROOT = Path(__file__).resolve().parent.parent
COLOURS = ["red", "blue", "green", "yellow"]


@pytest.fixture(scope="module")
def hub_folder(tmp_path_factory) -> Path:
    datasets = pytest.importorskip("datasets")
    folder = tmp_path_factory.mktemp("flickr-like")
    (folder / "data").mkdir()
    for split, count in (("train", 4), ("test", 2)):
        images = [Image.new("RGB", (40, 30), COLOURS[i % 4]) for i in range(count)]
        columns = {"image": images, "file_name": [f"{split}{i}.jpg" for i in range(count)]}
        for k in range(5):
            columns[f"caption_{k}"] = [f"a {COLOURS[i % 4]} picture number {k}" for i in range(count)]
        features = datasets.Features({"image": datasets.Image(), "file_name": datasets.Value("string"),
                                      **{f"caption_{k}": datasets.Value("string") for k in range(5)}})
        datasets.Dataset.from_dict(columns, features=features).to_parquet(
            str(folder / "data" / f"{split}-00000-of-00001.parquet"))
    return folder


def test_hub_caption_data_gives_one_sample_per_caption_with_every_reference(hub_folder, tmp_path):
    train = load_dataset(f"hub:{hub_folder}", "train", cache_dir=str(tmp_path))
    assert len(train) == 4 * 5 and len({s.image_id for s in train}) == 4
    first = train[0]
    assert first.task == "caption" and first.prompt == "Describe this image." and len(first.references) == 5
    assert first.load_image().mode == "RGB" and first.load_image().size == (40, 30)
    assert len(load_dataset(f"hub:{hub_folder}", "test", 1, cache_dir=str(tmp_path))) == 5  # count limits images


def test_caption_columns_are_found_or_refused_clearly():
    assert caption_columns(["image", "caption"], None) == ["caption"]
    assert caption_columns(["image", "caption_1", "caption_0"], None) == ["caption_0", "caption_1"]
    with pytest.raises(ValueError, match="no caption column found among"):
        caption_columns(["image", "label"], None)
    with pytest.raises(ValueError, match=r"caption column\(s\) \['alt'\] not in the data set"):
        caption_columns(["image", "caption"], "alt")


def test_caption_stage_trains_on_a_hub_layout_data_set(hub_folder, tiny_llm_dir, tmp_path):
    data = f'data.train=[{{name="hub:{hub_folder}",cache_dir="{tmp_path}"}}]'
    overrides = _overrides(tiny_llm_dir, tmp_path / "run", data, "train.max_steps=2")
    _run_stage("caption", overrides, tmp_path / "cache")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["samples"] == 20 and summary["images"] == 4 and summary["steps"] == 2


def test_datasets_is_imported_only_when_a_hub_data_set_is_named():
    code = ("import sys, train.loop, train.evaluate, train.card, train.data; "
            "train.data.load_dataset('shapes', 'train', 2); print('datasets' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "False", result.stderr


@pytest.mark.parametrize("recipe, family", [("gpu-clip-mlp-smollm2-360m", "clip"),
                                            ("gpu-siglip-query-qwen2.5-0.5b", "siglip")])
def test_gpu_recipe_runs_align_then_caption_on_tiny_stand_ins(recipe, family, hub_folder, tiny_llm_dir, tmp_path,
                                                             monkeypatch):
    """The recipe's own config with its hub encoder, LLM and data set swapped for tiny local stand-ins."""
    from tests.test_encoders_hub import TINY_CONFIGS
    from train import loop
    from vlm_demo.encoders.hf import encoder_from_config

    path = ROOT / "train" / "configs" / f"{recipe}.toml"
    config = load_config(path)
    torch.manual_seed(0)
    tiny = encoder_from_config(family, TINY_CONFIGS[family](), name=config.model.encoder)
    monkeypatch.setattr(loop, "build_encoder", lambda name: tiny)
    data = f'{{name="hub:{hub_folder}",cache_dir="{tmp_path}"}}'
    common = [f'model.llm="{tiny_llm_dir}"', f"data.train=[{data}]", f"data.eval=[{data}]", "train.max_steps=2",
              "train.batch_size=4", 'caption.lora_targets=["q_proj","v_proj"]']
    os.environ["VLM_DEMO_CACHE"] = str(tmp_path / "cache")
    align = loop.train_stage("align", load_config(path, [*common, f'output_dir="{tmp_path / "align"}"',
                                                         'model.init_from=""']), progress=False)
    final = loop.train_stage("caption", load_config(path, [*common, f'output_dir="{tmp_path / "caption"}"',
                                                           f'model.init_from="{align}"']), progress=False)
    saved = json.loads((final / "config.json").read_text())
    assert (saved["encoder"], saved["kind"]) == (config.model.encoder, config.model.adapter)
    assert (final / "lora").is_dir() == (config.caption.llm_mode == "lora")
    assert json.loads((tmp_path / "caption" / "summary.json").read_text())["steps"] == 2
