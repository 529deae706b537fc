"""Hub ids (offline, with the hub mocked): local paths refused alike, size checked before download, an allowlist, one
hub load at a time. Nothing is downloaded."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from vlm_demo import hub
from vlm_demo.hub import HubError, check_hub_id
from vlm_demo.llms import load_llm

ROOT = Path(__file__).resolve().parent.parent


def _fake_hub(monkeypatch, parameters: int, files: dict[str, int], folder: Path | None = None) -> list[str]:
    """The hub answers model_info with these facts; downloads are recorded (and served from `folder`)."""
    import huggingface_hub

    downloads: list[str] = []
    siblings = [SimpleNamespace(rfilename=name, size=size) for name, size in files.items()]
    info = SimpleNamespace(siblings=siblings, sha="0" * 40,
                           safetensors=SimpleNamespace(total=parameters) if parameters else None)
    monkeypatch.setattr(hub, "hub_reachable", lambda: True)
    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", lambda self, repo_id, **_: info)

    def snapshot(repo_id, **_):
        downloads.append(repo_id)
        if folder is None:
            pytest.fail("downloaded a model that should have been refused")
        return str(folder)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot)
    return downloads


@pytest.mark.parametrize("name", ["/etc/passwd", "../secrets/model", "a/b/c", "~/model", "./model", "owner/..",
                                  "just-a-name"])
def test_names_that_are_not_hub_ids_are_refused(name):
    with pytest.raises(HubError, match="is not a hub model id"):
        check_hub_id(name)


def test_a_typed_id_that_is_a_local_folder_gets_the_same_answer_as_one_that_is_not(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.chdir(ROOT)
    assert (ROOT / "assets" / "adapters").is_dir()
    answers = []
    for name in ("assets/adapters", "assets/no-such-folder"):
        with pytest.raises(HubError) as caught:
            load_llm(name)
        answers.append(str(caught.value).replace(name, "<id>"))
    assert answers[0] == answers[1] and "not in the local hub cache" in answers[0]


def test_a_model_over_the_memory_budget_is_refused_before_download(monkeypatch):
    monkeypatch.setenv("VLM_DEMO_MEMORY_BUDGET_MB", "4096")
    downloads = _fake_hub(monkeypatch, parameters=7_250_000_000, files={"model-00001-of-00003.safetensors": 5 << 30,
                                                                        "config.json": 600})
    with pytest.raises(HubError, match=r"7\.25 B parameters, about 27\.0 GB loaded, over .* budget of 4\.0 GB"):
        load_llm("someone/very-large-model")
    assert downloads == []


def test_a_model_without_safetensors_weights_is_refused(monkeypatch):
    _fake_hub(monkeypatch, parameters=0, files={"pytorch_model.bin": 1 << 20, "config.json": 600})
    with pytest.raises(HubError, match="no safetensors weights"):
        load_llm("someone/pickled-model")


def test_a_model_within_the_budget_loads_from_its_snapshot(monkeypatch, tiny_llm_dir):
    downloads = _fake_hub(monkeypatch, parameters=10_000, files={"model.safetensors": 40_000, "config.json": 600},
                          folder=Path(tiny_llm_dir))
    llm = load_llm("someone/tiny-model")
    assert downloads == ["someone/tiny-model"] and llm.name == "someone/tiny-model" and llm.hidden_size == 32


def test_the_allowlist_limits_which_hub_ids_load(monkeypatch):
    monkeypatch.setenv("VLM_DEMO_HUB_ALLOW", "HuggingFaceTB/*, Qwen/Qwen2.5-0.5B-Instruct")
    assert check_hub_id("HuggingFaceTB/SmolLM2-360M-Instruct")
    assert check_hub_id("Qwen/Qwen2.5-0.5B-Instruct")
    with pytest.raises(HubError, match="not among the hub models this server loads"):
        check_hub_id("someone/huge-model")
    assert check_hub_id("someone/huge-model", typed=False)  # the registry's own ids are not a visitor's choice


def test_a_path_that_is_not_hub_shaped_loads_as_a_local_folder(tiny_llm_dir, monkeypatch):
    import vlm_demo.llms

    monkeypatch.setattr(vlm_demo.llms, "fetched", lambda *_, **__: pytest.fail("a local folder went to the hub"))
    assert load_llm(str(tiny_llm_dir)).hidden_size == 32
    with pytest.raises(ValueError, match="neither a registered LLM, a hub id"):
        load_llm("/no/such/folder/anywhere")


def test_hub_loads_run_one_at_a_time(monkeypatch, tmp_path):
    inside, most = [0], [0]
    lock = threading.Lock()

    def slow_snapshot(repo_id, width):
        with lock:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        time.sleep(0.1)
        with lock:
            inside[0] -= 1
        return tmp_path

    monkeypatch.setattr(hub, "hub_reachable", lambda: True)
    monkeypatch.setattr(hub, "_remote_snapshot", slow_snapshot)

    def fetch(number):
        with hub.fetched(f"someone/model-{number}"):
            time.sleep(0.05)

    threads = [threading.Thread(target=fetch, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert most[0] == 1


def test_the_app_refuses_an_unlisted_hub_llm_before_loading_anything(monkeypatch):
    import gradio as gr

    from vlm_demo.ui import common

    monkeypatch.setenv("VLM_DEMO_HUB_ALLOW", "HuggingFaceTB/*")
    monkeypatch.setattr(common, "get_cache", lambda: pytest.fail("the cache was asked for a refused model"))
    combo = common.resolve_combo("efficientnet-lite0", "mlp", "someone/huge-model")
    with pytest.raises(gr.Error, match="not among the hub models this server loads"):
        common.load_vlm(combo)
