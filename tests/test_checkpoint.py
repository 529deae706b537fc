"""`vlm_demo.checkpoint.Checkpoint`, the one place a checkpoint is resolved (folder or hub id), read and checked: a hub
id is fetched once however many parts (config, weights, LoRA, encoder) are used, a resolved checkpoint is passed on
as it is, and the fine-tuned encoder goes into a private copy. The hub is a local folder here; nothing is downloaded."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_model
from torch import nn

from vlm_demo.adapters import CheckpointError, adapter_for, build_adapter, load_adapter
from vlm_demo.checkpoint import Checkpoint
from vlm_demo.llms import LanguageModel
from vlm_demo.pipeline import VisionLanguageModel

REPO = "someone/tiny-checkpoint"


class TinyEncoder(nn.Module):
    """Just what loading a checkpoint asks of an encoder: a name, a token width and weights."""

    name, embed_dim = "e", 8

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(8, 8)


def save_checkpoint(folder: Path, llm_hidden: int = 32, encoder: nn.Module | None = None, llm=None) -> Path:
    """A linear adapter for TinyEncoder -> the tiny LLM, with a LoRA of `llm` and fine-tuned `encoder` weights."""
    build_adapter("linear", encoder="e", token_dim=8, llm="tiny-llama", llm_hidden=llm_hidden).save_pretrained(folder)
    if llm is not None:
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(r=2, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
        get_peft_model(copy.deepcopy(llm.model), lora).save_pretrained(folder / "lora")
    if encoder is not None:
        save_model(encoder, str(folder / "encoder.safetensors"))
    return folder


@pytest.fixture
def hub(tmp_path, monkeypatch, tiny_llm) -> list[str]:
    """A hub holding REPO (with a LoRA) as a local folder: every snapshot download is counted, any other hub call
    fails."""
    save_checkpoint(tmp_path / "hub" / REPO, llm=tiny_llm)
    fetched = []

    def snapshot(repo_id, revision=None, allow_patterns=None, **_):
        fetched.append(repo_id)
        folder = tmp_path / "hub" / repo_id
        if not folder.is_dir():
            raise FileNotFoundError(f"{repo_id} is not on the hub")
        return str(folder)

    def no_single_files(*args, **kwargs):
        raise AssertionError("a checkpoint file was fetched by itself, outside the one snapshot")

    monkeypatch.setattr("huggingface_hub.snapshot_download", snapshot)
    monkeypatch.setattr("huggingface_hub.hf_hub_download", no_single_files)
    monkeypatch.setattr("huggingface_hub.hub_mixin.hf_hub_download", no_single_files)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)  # anything real fails at once
    return fetched


def test_a_hub_id_is_resolved_once_when_a_model_and_its_lora_are_loaded_from_it(hub, tiny_llm):
    llm = LanguageModel(tiny_llm.name, copy.deepcopy(tiny_llm.model), tiny_llm.tokenizer)  # the LoRA goes on a copy
    vlm = VisionLanguageModel.from_checkpoint(REPO, llm=llm, encoder=TinyEncoder())
    assert hub == [REPO]
    assert vlm.trained and vlm.name == f"checkpoint:{REPO}" and vlm.adapter.config.kind == "linear"
    assert vlm.lora in llm.loras


def test_a_resolved_checkpoint_is_passed_on_without_another_look_up(hub):
    checkpoint = Checkpoint.resolve(REPO)
    assert Checkpoint.resolve(checkpoint) is checkpoint
    assert checkpoint.lora == str(checkpoint.folder / "lora") and checkpoint.encoder_weights is None
    assert load_adapter(checkpoint).config.llm_hidden == 32
    assert adapter_for(TinyEncoder(), "tiny-llama", 32, checkpoint=checkpoint).config.kind == "linear"
    assert hub == [REPO]


def test_a_missing_hub_checkpoint_is_one_line_naming_it(hub):
    with pytest.raises(CheckpointError, match="someone/missing: not a local folder and not fetched from the hub"):
        Checkpoint.resolve("someone/missing")


def test_a_local_only_checkpoint_is_never_looked_up_on_the_hub(hub):
    with pytest.raises(CheckpointError, match="is a folder with config.json"):
        Checkpoint.resolve("someone/missing", local_only=True)
    assert hub == []


def test_a_checkpoint_for_another_llm_is_refused_naming_both_sides(tmp_path, tiny_llm):
    folder = save_checkpoint(tmp_path / "wide", llm_hidden=48)
    with pytest.raises(CheckpointError, match="hidden size: checkpoint 48 vs LLM 32"):
        VisionLanguageModel.from_checkpoint(folder, llm=tiny_llm, encoder=TinyEncoder())


def test_fine_tuned_encoder_weights_go_into_a_private_frozen_copy(tmp_path):
    tuned = TinyEncoder()
    checkpoint = Checkpoint.resolve(save_checkpoint(tmp_path / "tuned", encoder=tuned))
    shared = TinyEncoder()
    before = shared.proj.weight.clone()
    private = checkpoint.vision_encoder(shared)
    assert private is not shared and torch.equal(shared.proj.weight, before)
    assert torch.equal(private.proj.weight, tuned.proj.weight) and not private.proj.weight.requires_grad
    plain = Checkpoint.resolve(save_checkpoint(tmp_path / "plain"))
    assert plain.lora is None
    assert plain.vision_encoder(shared) is shared and not plain.load_encoder_weights(shared)


def test_from_pretrained_reads_a_folder_and_sends_a_hub_id_to_the_checkpoint(hub, tmp_path):
    from vlm_demo.adapters.linear import LinearAdapter

    folder = save_checkpoint(tmp_path / "folder")
    assert LinearAdapter.from_pretrained(str(folder)).config.kind == "linear"
    with pytest.raises(CheckpointError, match="not a checkpoint folder"):
        LinearAdapter._from_pretrained(model_id=REPO, config={"kind": "linear"})
    assert hub == []
