"""The Gradio app through gradio_client, served in-process on a loopback port: caption, chat, compare, alignment."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from app_helpers import EXAMPLES, PHOTO, serve_app, shipped_image_tokens
from PIL import Image

from vlm_demo.combos import COMBOS, DEFAULT_COMBO

pytestmark = pytest.mark.slow
FAST = {"max_new_tokens": 6}


@pytest.fixture(scope="module")
def client():
    from gradio_client import Client

    with serve_app() as url:
        yield Client(url, verbose=False)


def photo():
    from gradio_client import handle_file

    return handle_file(str(PHOTO))


def test_caption_endpoint(client):
    result = client.predict(image=photo(), api_name="/caption", **FAST)
    default = COMBOS[DEFAULT_COMBO]
    assert result["caption"].strip() and result["combination"] == default.name
    assert result["encoder"] == default.encoder and result["llm"] == "smollm2-135m-instruct"
    assert isinstance(result["adapter_trained"], bool)


def returned(history):
    """A conversation the client received, ready to send back: its image files are uploaded again."""
    from gradio_client import handle_file

    for message in history:
        for part in message["content"]:
            if part.get("type") == "file":
                part["file"] = handle_file(part["file"])
    return history


def texts(message):
    return "".join(part.get("text", "") for part in message["content"])


def test_chat_streams_and_keeps_the_conversation(client):
    job = client.submit(photo(), {"text": "What is in the picture?", "files": []}, [], api_name="/chat", **FAST)
    history, message, status = job.result()
    assert len(job.outputs()) > 2  # streamed: the empty answer first, then pieces
    assert [m["role"] for m in history] == ["user", "assistant"] and message["text"] == ""
    assert history[0]["content"][0]["type"] == "file" and history[0]["content"][0]["file"].endswith("chelsea.jpg")
    assert texts(history[1]).strip()
    assert "adapter" in status.lower() and ("Untrained" in status or "Trained" in status)
    history, _, _ = client.predict(photo(), {"text": "And what colour is it?", "files": []}, returned(history),
                                   api_name="/chat", **FAST)
    assert [m["role"] for m in history] == ["user", "assistant", "user", "assistant"]
    assert [part["type"] for part in history[2]["content"]] == ["text"]  # the image is sent once, at the start
    again, _ = client.predict(returned(history), api_name="/regenerate", **FAST)
    assert len(again) == 4 and texts(again[2]) == "And what colour is it?"


def test_a_second_image_joins_the_conversation(client):
    from gradio_client import handle_file

    first, _ = client.predict(photo(), [], api_name="/describe", **FAST)
    shape = handle_file(str(EXAMPLES / "shapes-test-7-orange-circle.png"))
    history, _, status = client.predict(photo(), {"text": "And this one?", "files": [shape]}, returned(first),
                                        api_name="/chat", **FAST)
    files = [part["file"] for m in history for part in m["content"] if part["type"] == "file"]
    assert [Path(f).name for f in files] == ["chelsea.jpg", "shapes-test-7-orange-circle.png"]
    assert texts(history[-1]).strip() and "up to 4 images per conversation" in status


def test_describe_then_regenerate_with_the_same_seed_repeats(client):
    first, _ = client.predict(photo(), [], api_name="/describe", **FAST)
    second, _ = client.predict(returned(first), api_name="/regenerate", **FAST)
    assert texts(first[0]) == "Describe this image."
    assert texts(second[-1]) == texts(first[-1])


def test_caption_batch_captions_each_image_in_order(client):
    from gradio_client import handle_file

    shapes = sorted(EXAMPLES.glob("shapes-test-*.png"))[:2]
    result = client.predict([photo(), *(handle_file(str(path)) for path in shapes)], api_name="/caption_batch",
                            **FAST)
    captions = result["captions"]
    assert len(captions) == 3 and all(c["caption"].strip() for c in captions)
    one = client.predict(image=handle_file(str(shapes[0])), api_name="/caption", **FAST)
    assert captions[1]["caption"] == one["caption"]  # greedy: the batch answers as one call would
    assert {c["combination"] for c in captions} == {COMBOS[DEFAULT_COMBO].name}


def test_caption_batch_refuses_an_empty_or_oversized_batch(client):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="at least one image"):
        client.predict([], api_name="/caption_batch", **FAST)
    with pytest.raises(AppError, match="more than one call takes"):
        client.predict([photo()] * 9, api_name="/caption_batch", **FAST)


def test_compare_three_adapters_same_seed(client):
    board, results = client.predict(photo(), "Describe this image.", ["mlp", "linear", "query"], api_name="/compare",
                                    **FAST)
    assert [r["adapter"] for r in results] == ["mlp", "linear", "query"]
    for result in results:
        assert result["caption"] and result["tokens"] > 0 and result["ttft_s"] > 0 and result["parameters"] > 0
        assert result["tokens_per_s"] >= 0 and result["image_tokens"] > 0
    assert results[1]["image_tokens"] == 1  # the linear adapter's single pseudo-token
    assert board.count('class="vd-card"') == 3 and "tokens/s" in board
    assert [r["llm_lora"] for r in results] == [True, False, False] and board.count("+ LoRA</span>") == 1


def test_compare_needs_two_to_four_adapters(client):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="Pick 2 to 4 adapters"):
        client.predict(photo(), "Describe this image.", ["mlp"], api_name="/compare", **FAST)


def test_alignment_plot_tables_baseline_and_ablation(client):
    plot, stats, aggregate, per_token, caption, ablated, grid_map, note = client.predict(photo(), api_name="/alignment",
                                                                                       **FAST)
    figure = json.loads(plot["plot"])
    names = [trace.get("name", "") for trace in figure["data"]]
    assert any(name.startswith("vocabulary") for name in names) and any("image tokens" in n for n in names)
    assert "Random baseline" in stats and "Nearest-token cosine" in stats
    assert len(aggregate["data"]) == 10 and len(per_token["data"]) == shipped_image_tokens(DEFAULT_COMBO)
    assert all(-1 <= row[2] <= 1 for row in aggregate["data"])
    assert caption and ablated and caption != "generating\u2026"
    shown = grid_map.get("value", grid_map)  # the client passes a visibility update through with its value
    heat = next(trace for trace in json.loads(shown["plot"])["data"] if trace["type"] == "heatmap")
    assert len(heat["z"]) == 7 and len(heat["text"][0]) == 7 and "7\u00d77 grid" in note  # mlp: 49 cells
    cosines = [row[3] for row in per_token["data"]]
    assert all(min(abs(value - c) for c in cosines) < 1e-3 for row in heat["z"] for value in row)


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad")
    (folder / "empty.png").write_bytes(b"")
    (folder / "truncated.jpg").write_bytes(PHOTO.read_bytes()[: PHOTO.stat().st_size // 3])
    (folder / "text.png").write_text("not an image at all")
    Image.new("1", (10_000, 9_000)).save(folder / "huge.png")  # 90 M pixels, a small file
    return folder


@pytest.mark.parametrize("name", ["empty.png", "text.png"])
def test_a_file_that_is_not_an_image_is_refused_at_upload(client, bad_files, name):
    import httpx

    with (bad_files / name).open("rb") as handle:
        response = httpx.post(f"{client.src.rstrip('/')}/gradio_api/upload", files={"files": (name, handle)})
    assert response.status_code == 415 and "Only images can be uploaded" in response.text


@pytest.mark.parametrize("name, reason", [("truncated.jpg", "truncated"), ("huge.png", "too many pixels")])
def test_bad_upload_returns_a_clear_error_and_the_server_keeps_serving(client, bad_files, name, reason):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match=f"This upload cannot be used: .*{reason}"):
        client.predict(handle_file(str(bad_files / name)), {"text": "Describe.", "files": []}, [], api_name="/chat",
                       **FAST)
    with pytest.raises(AppError, match="This upload cannot be used"):
        client.predict(image=handle_file(str(bad_files / name)), api_name="/caption", **FAST)
    assert client.predict(image=photo(), api_name="/caption", **FAST)["caption"]


@pytest.mark.parametrize("mode", ["I;16", "CMYK", "RGBA", "P", "LA"])
def test_odd_image_modes_are_captioned(client, tmp_path, mode):
    from gradio_client import handle_file

    if mode == "I;16":
        image = Image.fromarray((np.arange(64 * 64).reshape(64, 64) * 15).astype(np.uint16))
    else:
        image = Image.open(PHOTO).convert(mode)
    path = tmp_path / ("odd.jpg" if mode == "CMYK" else "odd.png")
    image.save(path)
    assert client.predict(image=handle_file(str(path)), api_name="/caption", **FAST)["caption"]


@pytest.mark.parametrize("encoder, adapter, llm, message", [
    ("dinov2-small", "multistage", "smollm2-135m-instruct", "needs CNN stage maps"),
    ("efficientnet-lite0", "mlp", "not a model", "Unknown LLM"),
    ("no-such-encoder", "mlp", "smollm2-135m-instruct", "Unknown encoder"),
])
def test_impossible_choices_are_refused_with_a_reason(client, encoder, adapter, llm, message):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match=message):
        client.predict(image=photo(), encoder=encoder, adapter=adapter, llm=llm, api_name="/caption", **FAST)


def test_missing_image_and_bad_settings(client):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="Upload an image"):
        client.predict(None, {"text": "Hello", "files": []}, [], api_name="/chat", **FAST)
    with pytest.raises(AppError, match="Max new tokens"):
        client.predict(image=photo(), max_new_tokens=100_000, api_name="/caption")


def test_model_cards_are_read_from_checkpoint_folders(tmp_path, monkeypatch):
    from vlm_demo.ui import cards

    folder = tmp_path / "efficientnet-lite0--linear--smollm2-135m-instruct"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"kind": "linear", "encoder": "efficientnet-lite0",
                                                    "llm": "smollm2-135m-instruct", "token_dim": 1280,
                                                    "llm_hidden": 576}))
    header = json.dumps({"proj.weight": {"dtype": "F32", "shape": [576, 1280], "data_offsets": [0, 4]},
                         "proj.bias": {"dtype": "F32", "shape": [576], "data_offsets": [4, 8]}}).encode()
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 8)
    (folder / "README.md").write_text("---\nlicense: apache-2.0\n---\n# Linear adapter\n\nHeld-out CIDEr 0.1\n")
    Image.new("RGB", (20, 10), "white").save(folder / "loss-curve.png")
    monkeypatch.setattr(cards, "ADAPTERS_DIR", tmp_path)
    found = cards.shipped_cards()
    assert [card.name for card in found] == [folder.name]
    assert found[0].parameters == 576 * 1280 + 576 and found[0].readme.startswith("# Linear adapter")
    facts, text, curve = cards.card_parts(folder.name)
    assert "737.86 k" in facts and "license" not in text and curve.endswith("loss-curve.png")
    (folder / "README.md").write_text("# Linear adapter\n\n![loss curve](loss-curve.png)\n![elsewhere](../x.png)\n")
    _, text, curve = cards.card_parts(folder.name)
    assert "![loss curve](data:image/png;base64,iVBOR" in text and "![elsewhere](../x.png)" in text
    assert curve is None  # shown in the card text, not twice
    assert "trained \u00b7 shipped" in cards.overview_html(found)


def test_a_hub_model_without_a_reachable_hub_is_refused_quickly(client, monkeypatch):
    import time

    from gradio_client.exceptions import AppError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the app runs in this process
    start = time.perf_counter()
    with pytest.raises(AppError, match="must be downloaded from the Hugging Face hub"):
        client.predict(image=photo(), llm="someone/not-a-cached-model", api_name="/caption", **FAST)
    with pytest.raises(AppError, match="Encoder clip-vit-b16 must be downloaded"):
        client.predict(image=photo(), encoder="clip-vit-b16", api_name="/caption", **FAST)
    assert time.perf_counter() - start < 10


def test_a_four_column_compare_gets_a_gpu_slot_sized_for_it():
    from vlm_demo.ui.compare import gpu_seconds

    four = gpu_seconds(None, "Describe.", ["mlp", "linear", "query", "perceiver"], "e", "l", 256)
    assert four == int(10 + 4 * (10 + 256 / 20)) and four > 60  # ZeroGPU's default slot would cut it off
    assert gpu_seconds(None, "Describe.", ["mlp", "linear"], "e", "l", 48) < 60
