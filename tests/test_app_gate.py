"""What an anonymous caller can do to the served app (vlm_demo/ui/gate/): one test per attack on the public API,
each naming the Gradio behaviour the defence relies on."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import gradio as gr
import pytest
from app_helpers import PHOTO, serve_app

from bench.attacks import ATTACKS, Attacker
from vlm_demo.ui.gate import inputs, routes, traffic

pytestmark = pytest.mark.slow
FAST = {"max_new_tokens": 2}
DEFAULT = ["efficientnet-lite0", "mlp", "smollm2-135m-instruct"]


@pytest.fixture(scope="module")
def app():
    from vlm_demo.ui import build_app

    return build_app()


@pytest.fixture(scope="module")
def url(app):
    with serve_app(app) as address:
        yield address


@pytest.fixture(scope="module")
def client(url):
    from gradio_client import Client

    return Client(url, verbose=False)


@pytest.fixture()
def http(url):
    import httpx

    with httpx.Client(base_url=url.rstrip("/"), timeout=120) as session:
        yield session


def refusal(client, api_name: str, *args, **kwargs) -> str:
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as caught:
        client.predict(*args, api_name=api_name, **kwargs)
    return str(caught.value)


def called(http, api_name: str, data: list) -> str:
    """A /call/ request as raw HTTP, and the result stream it gets."""
    posted = http.post(f"/gradio_api/call/{api_name}", json={"data": data})
    assert posted.status_code == 200, posted.text
    return http.get(f"/gradio_api/call/{api_name}/{posted.json()['event_id']}").text


def server_files(tmp_path: Path) -> list[object]:
    """Paths a caller might try: an image outside the upload folder, secrets, nothing, a folder, a device."""
    outside = tmp_path / "private.jpg"
    shutil.copy(PHOTO, outside)
    paths = [str(outside), "/etc/passwd", str(tmp_path / "missing.png"), str(tmp_path), "/dev/zero"]
    return [{"path": path} for path in paths]


def test_server_files_are_refused_with_one_message_whatever_is_at_the_path(client, tmp_path):
    # Gradio checks the upload folder only for file payloads that carry its "gradio.FileData" marker
    messages = set()
    for value in server_files(tmp_path):
        messages.add(refusal(client, "/caption", image=value, **FAST))
        messages.add(refusal(client, "/caption_batch", [value], **FAST))
        messages.add(refusal(client, "/describe", value, [], *DEFAULT, 2, 0.0, 0.9, 0))
    assert messages == {inputs.NOT_AN_UPLOAD}
    bare = value["path"]  # a path without the payload around it says nothing about the path either
    for api_name in ("/caption", "/describe"):
        assert refusal(client, api_name, bare, **FAST) in (inputs.NOT_AN_UPLOAD, inputs.NOT_A_FILE)


def test_no_link_to_a_server_file_comes_back_in_a_transcript(client, http, tmp_path):
    # Gradio copies a file named in an output into its cache and returns a download URL for it
    outside = tmp_path / "exif.jpg"
    shutil.copy(PHOTO, outside)
    history = [{"role": "user", "content": [{"type": "file", "file": {"path": str(outside)}}]},  # no marker
               {"role": "assistant", "content": [{"type": "text", "text": "a cat"}]}]
    assert inputs.NOT_AN_UPLOAD in refusal(client, "/describe", {"path": str(outside)}, [], *DEFAULT, 2, 0.0, 0.9, 0)
    assert inputs.NOT_AN_UPLOAD in refusal(client, "/chat", None, {"text": "and?", "files": []}, history, *DEFAULT,
                                         2, 0.0, 0.9, 0)
    history[0]["content"][0]["file"]["meta"] = {"_type": "gradio.FileData"}  # raw HTTP: gradio_client would upload it
    assert inputs.NOT_AN_UPLOAD in called(http, "chat", [None, {"text": "and?", "files": []}, history, *DEFAULT,
                                                       2, 0.0, 0.9, 0])
    copies = [path for path in inputs.upload_folder().rglob("exif.jpg")]
    assert copies == []
    assert http.get(f"/gradio_api/file={outside}").status_code == 403  # Gradio's file route serves no such file


def test_a_component_smuggled_into_the_history_is_refused_before_gradio_builds_it(client, tmp_path, monkeypatch):
    # Gradio's Chatbot builds and preprocesses any component a "component" message names (chatbot.py)
    import gradio.components.chatbot as chatbot

    built: list[str] = []
    monkeypatch.setattr(chatbot, "import_component_and_data", lambda name: built.append(name))
    secret = tmp_path / "notes.txt"
    secret.write_text("secret")
    for component, value in (("image", {"path": str(PHOTO)}), ("file", [{"path": str(secret)}])):
        history = [{"role": "user", "content": [{"type": "component", "component": component, "value": value,
                                                 "constructor_args": {}, "props": {}}]},
                   {"role": "assistant", "content": [{"type": "text", "text": "ok"}]}]
        message = refusal(client, "/chat", None, {"text": "and?", "files": []}, history, *DEFAULT, 2, 0.0, 0.9, 0)
        assert "only text and uploaded images" in message
    assert built == []
    assert list(inputs.upload_folder().rglob("notes.txt")) == []


def test_the_chatbots_own_events_run_in_the_queue_with_a_limit(app, http):
    # Gradio serves an event with queue=False at /gradio_api/run/predict, outside every concurrency limit, and
    # lets /gradio_api/run/<name> skip the queue while the app's api_open is true (its default off a Space)
    events = {getattr(fn.fn, "__name__", ""): fn for fn in app.fns.values()}
    for name in ("retry", "edit", "undo"):
        assert events[name].queue is not False and events[name].concurrency_limit == 2, name
    assert app.api_open is False
    undo = next(d["id"] for d in http.get("/config").json()["dependencies"] if d.get("api_name") == "undo")
    direct = http.post("/gradio_api/run/predict", json={"data": [[]], "fn_index": undo, "session_hash": "x"})
    assert direct.status_code == 404 and "join the queue" in direct.text


def test_hundreds_of_empty_turns_are_refused_before_any_work(client):
    history = [{"role": role, "content": [{"type": "text", "text": ""}]} for _ in range(800)
               for role in ("user", "assistant")]
    start = time.perf_counter()
    message = refusal(client, "/chat", None, {"text": "and?", "files": []}, history, *DEFAULT, 2, 0.0, 0.9, 0)
    assert "1,600 messages" in message and time.perf_counter() - start < 20


def test_a_conversation_is_capped_in_turns_and_in_tokens_not_only_characters(tiny_llm):
    from vlm_demo.pipeline import MAX_PROMPT_TOKENS, MAX_TURNS, PromptTooLong, check_prompt, check_prompt_tokens

    with pytest.raises(PromptTooLong, match=f"{MAX_TURNS + 1} turns"):
        check_prompt("and?", [("", "")] * (MAX_TURNS + 1))
    check_prompt("and?", [("", "")] * MAX_TURNS)
    with pytest.raises(PromptTooLong, match="tokens long"):
        check_prompt_tokens(tiny_llm, "x " * (MAX_PROMPT_TOKENS + 1))


def upload(http, name: str, data: bytes) -> str:
    response = http.post("/gradio_api/upload", files={"files": (name, data)})
    assert response.status_code == 200, response.text
    return response.json()[0]


def test_a_result_nobody_reads_is_cancelled(app, http, monkeypatch):
    # Gradio runs a /call/ event to the end whether or not anyone opens its result
    monkeypatch.setattr(traffic, "UNREAD_GRACE_S", 0.0)
    photo = {"path": upload(http, "chelsea.jpg", PHOTO.read_bytes()), "meta": {"_type": "gradio.FileData"}}
    posted = http.post("/gradio_api/call/caption", json={"data": [photo, "Describe this image at length.",
                                                                  *DEFAULT, 200, 0.0, 0.9, 0]})
    event_id = posted.json()["event_id"]
    deadline = time.monotonic() + 120
    while event_id in app._queue.event_ids_to_events and time.monotonic() < deadline:
        time.sleep(0.2)  # nobody reads it meanwhile
    result = http.get(f"/gradio_api/call/caption/{event_id}").text
    assert "event: error" in result and "cancelled" in result


def test_one_client_holds_at_most_two_places_in_a_queue_and_others_still_get_in(http, monkeypatch):
    monkeypatch.setenv("VLM_DEMO_TRUST_PROXY", "1")
    photo = {"path": upload(http, "chelsea.jpg", PHOTO.read_bytes()), "meta": {"_type": "gradio.FileData"}}
    body = {"data": [photo, "Describe this image.", *DEFAULT, 64, 0.0, 0.9, 0]}
    flood = {"X-Forwarded-For": "203.0.113.7"}
    answers = [http.post("/gradio_api/call/caption", json=body, headers=flood) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 503]
    assert "already have 2 requests" in answers[2].text
    other = http.post("/gradio_api/call/caption", json=body, headers={"X-Forwarded-For": "198.51.100.2"})
    assert other.status_code == 200
    for answer in [*answers[:2], other]:
        assert "event: complete" in http.get(f"/gradio_api/call/caption/{answer.json()['event_id']}").text


def test_attachments_are_counted_before_any_is_decoded(monkeypatch):
    from vlm_demo.ui import chat, common

    decoded: list[object] = []
    monkeypatch.setattr(common, "open_image", lambda source: decoded.append(source))
    folder = inputs.upload_folder() / "attachments"
    folder.mkdir(parents=True, exist_ok=True)
    copy = folder / "chelsea.jpg"
    shutil.copy(PHOTO, copy)
    with pytest.raises(gr.Error, match="at most 4 images"):
        list(chat.respond(None, {"text": "and these?", "files": [str(copy)] * 40}, [], *DEFAULT, 2, 0.0, 0.9, 0))
    assert decoded == []


def test_uploads_take_only_images_a_few_at_a_time(http):
    before = {path for path in inputs.upload_folder().rglob("*") if path.is_file()}
    text = http.post("/gradio_api/upload", files={"files": ("notes.png", b"not an image at all")})
    assert text.status_code == 415 and "Only images" in text.text
    many = http.post("/gradio_api/upload", files=[("files", (f"{n}.jpg", PHOTO.read_bytes())) for n in range(9)])
    assert many.status_code == 413
    assert raw_status(http, "POST /gradio_api/upload", routes.MAX_UPLOAD_BODY + 1) == 413  # answered before the body
    assert {path for path in inputs.upload_folder().rglob("*") if path.is_file()} == before


def raw_status(http, request_line: str, declared_length: int) -> int:
    import socket

    host, port = http.base_url.host, http.base_url.port
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(f"{request_line} HTTP/1.1\r\nHost: {host}\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                     f"Content-Length: {declared_length}\r\n\r\n".encode())
        return int(sock.recv(4096).split()[1])


def test_the_upload_folder_stays_within_its_budget_oldest_uploads_first(tmp_path):
    import os

    kept = tmp_path / "example.jpg"
    kept.write_bytes(b"e" * 400)
    budget = routes.UploadBudget(lambda: tmp_path, limit=1_000)
    for number in range(4):
        assert budget.make_room(300)
        upload_dir = tmp_path / f"hash{number}"
        upload_dir.mkdir()
        (upload_dir / "photo.jpg").write_bytes(b"u" * 300)
        os.utime(upload_dir / "photo.jpg", (number + 10, number + 10))
    os.utime(kept, (1, 1))
    assert budget.make_room(300)
    left = sorted(path.relative_to(tmp_path).as_posix() for path in tmp_path.rglob("*") if path.is_file())
    assert left == ["example.jpg", "hash3/photo.jpg"]
    assert not budget.make_room(700)  # the examples never leave


def test_every_message_a_client_sees_is_ours():
    from vlm_demo.ui.common import load_image, settings_from, user_errors

    for values, words in (((8, 1e-300, 0.9, 0), r"emperature must be 0 \(greedy\) or from 0.01 to 2"),
                          ((8, 0.0, 0.9, 2**70), "eed must be a whole number from 0 to"),
                          ((float("inf"), 0.0, 0.9, 0), "must be finite numbers")):
        with pytest.raises(gr.Error, match=words):
            settings_from(*values)
    with pytest.raises(gr.Error, match="Send the image as an uploaded file"):
        load_image(5)

    @user_errors
    def broken() -> None:
        raise RuntimeError("probability tensor contains either `inf`, `nan` or element < 0")

    with pytest.raises(gr.Error) as caught:
        broken()
    assert "tensor" not in caught.value.message and "went wrong on the server" in caught.value.message


@pytest.mark.parametrize("name", list(ATTACKS))
def test_every_attack_of_the_soak_is_refused_on_the_served_app(url, monkeypatch, name):
    monkeypatch.setenv("VLM_DEMO_TRUST_PROXY", "1")
    monkeypatch.setattr(traffic, "UNREAD_GRACE_S", 0.0)  # the unread flood's two places end at their first token
    ATTACKS[name](Attacker(url, f"198.18.{list(ATTACKS).index(name)}.1"))
