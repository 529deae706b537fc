"""The app in a real browser (Debian chromium driven by playwright): every tab's job, with a screenshot of each."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest
from app_helpers import EXAMPLES, ROOT, serve_app, shipped_image_tokens

pytestmark = pytest.mark.slow
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHOTS = ROOT / "test-artifacts" / "screenshots"
TIMEOUT_MS = 120_000

if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} is missing: `make test` installs Debian's chromium", allow_module_level=True)


@pytest.fixture(scope="module")
def page():
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with serve_app() as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(url)
        page.wait_for_selector("#vd-chatbot")
        yield page
        browser.close()


def shot(page, name: str) -> Path:
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000
    return path


def pick(page, dropdown: str, option: str) -> None:
    """Gradio dropdowns are not <select>: click the input, then the option by role."""
    page.locator(f"{dropdown} input").click()
    page.get_by_role("option", name=option).first.click()


def wait_for_answer(page, count: int) -> None:
    """Until the chat shows `count` assistant messages, the last one with text, and the page can send again."""
    page.wait_for_function("count => { const bots = document.querySelectorAll('#vd-chatbot .message.bot');"
                           " return bots.length >= count && bots[bots.length - 1].innerText.trim().length > 0; }",
                           arg=count)
    page.wait_for_function("() => !document.querySelector('#vd-describe').disabled")  # the answer is complete


def send(page, text: str, *files: Path) -> None:
    if files:
        page.set_input_files("#vd-message input[type=file]", [str(f) for f in files])
        page.wait_for_function("n => document.querySelectorAll('#vd-message .thumbnail-item, #vd-message img')"
                               ".length >= n", arg=len(files))
    page.fill("#vd-message textarea", text)
    page.locator("#vd-message textarea").press("Enter")


def settings(page, max_new_tokens: int, temperature: float, top_p: float) -> None:
    accordion = page.locator("#vd-settings")
    if not accordion.locator("input[type=number]").first.is_visible():
        accordion.get_by_text("Generation settings").click()
    for index, value in enumerate((max_new_tokens, temperature, top_p)):
        box = accordion.locator("input[type=number]").nth(index)
        box.fill(str(value))
        box.press("Enter")


def bot_texts(page) -> list[str]:
    return [bot.inner_text().strip() for bot in page.locator("#vd-chatbot .message.bot").all()]


def user_images(page) -> int:
    return page.locator("#vd-chatbot .message.user img").count()


def generating() -> bool:
    """A generation thread of the app (served in this process) is running."""
    return any(thread.name == "generate" and thread.is_alive() for thread in threading.enumerate())


def test_chat_upload_pick_an_adapter_and_get_a_caption(page):
    page.set_input_files("#vd-image input[type=file]", str(EXAMPLES / "chelsea.jpg"))
    pick(page, "#vd-adapter", "query")
    status = page.locator("#vd-status-box")
    status.get_by_text("32 image tokens").wait_for()  # the query adapter is loaded
    assert "Untrained adapter" in status.inner_text() or "Trained adapter" in status.inner_text()
    page.click("#vd-describe")
    page.locator("#vd-chatbot .message.user").get_by_text("Describe this image.").wait_for()
    wait_for_answer(page, 1)
    assert user_images(page) == 1  # the picked image is part of the transcript
    send(page, "What colour is it?")
    page.locator("#vd-chatbot .message.user").get_by_text("What colour is it?").wait_for()
    wait_for_answer(page, 2)
    page.wait_for_timeout(500)
    shot(page, "chat")


def test_stop_ends_the_generation_within_a_second_and_the_server_keeps_answering(page):
    settings(page, 256, 2.0, 1.0)  # a long, rambling answer that would not end by itself soon
    send(page, "Tell me a long story about this picture.")
    page.locator("#vd-stop").wait_for(state="visible")
    page.locator("#vd-chatbot .message.user").get_by_text("Tell me a long story").wait_for()
    page.wait_for_function("() => { const bots = document.querySelectorAll('#vd-chatbot .message.bot');"
                           " return bots.length >= 3 && bots[2].innerText.trim().length > 0; }")
    assert generating()
    page.click("#vd-stop")
    stopped = time.perf_counter()
    while generating() and time.perf_counter() - stopped < 5:
        time.sleep(0.05)
    assert time.perf_counter() - stopped < 1.0
    page.locator("#vd-stop").wait_for(state="hidden")
    partial = bot_texts(page)[-1]
    page.wait_for_timeout(1500)
    assert bot_texts(page)[-1] == partial and partial  # the partial answer stays, and grows no more
    settings(page, 16, 0, 0.9)
    send(page, "What is it?")
    wait_for_answer(page, 4)
    assert len(bot_texts(page)) == 4 and bot_texts(page)[-1]


def test_retry_undo_and_edit_through_the_chatbot(page):
    chat = page.locator("#vd-chatbot")
    before = bot_texts(page)
    chat.get_by_role("button", name="Retry").last.click()
    page.wait_for_function("() => document.querySelector('#vd-describe').disabled")  # it is answering again
    wait_for_answer(page, len(before))
    assert len(bot_texts(page)) == len(before) and bot_texts(page)[-1] == before[-1]  # greedy: the same answer

    chat.get_by_role("button", name="Undo").last.click()
    page.wait_for_function("n => document.querySelectorAll('#vd-chatbot .message.bot').length === n",
                           arg=len(before) - 1)
    assert page.input_value("#vd-message textarea") == "What is it?"  # back in the box to change and resend
    page.fill("#vd-message textarea", "")

    chat.get_by_role("button", name="Edit").nth(1).click()
    chat.locator("textarea.edit-textarea").fill("Is it an animal?")
    chat.get_by_role("button", name="Submit").click()
    chat.locator(".message.user").get_by_text("Is it an animal?").wait_for()
    page.wait_for_function("() => document.querySelector('#vd-describe').disabled")
    wait_for_answer(page, 2)
    users = [user.inner_text() for user in chat.locator(".message.user").all()]
    assert "Is it an animal?" in users[-1] and not any("What colour" in text for text in users)
    assert len(bot_texts(page)) == 2


def test_a_two_image_conversation(page):
    send(page, "And what is in this one?", EXAMPLES / "shapes-test-7-orange-circle.png")
    page.wait_for_function("() => document.querySelectorAll('#vd-chatbot .message.user img').length >= 2")
    wait_for_answer(page, 3)
    images = page.locator("#vd-chatbot .message.user img").all()
    assert [img.get_attribute("src").rsplit("/", 1)[-1] for img in images] == ["chelsea.jpg",
                                                                               "shapes-test-7-orange-circle.png"]
    assert "up to 4 images per conversation" in page.locator("#vd-status-box").inner_text()
    page.wait_for_timeout(500)
    shot(page, "chat-two-images")


def test_a_bad_upload_shows_the_reason(page, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("this is not a picture")
    page.set_input_files("#vd-image input[type=file]", str(bad))
    toast = page.get_by_text("Only images can be uploaded here (JPEG, PNG, GIF, BMP, WebP or TIFF)")
    toast.first.wait_for()
    page.wait_for_timeout(600)  # the toast's entry animation
    shot(page, "bad-upload")
    assert page.locator("#vd-image img").count() == 0  # the bad file was taken out of the image box
    page.locator("#vd-examples").get_by_role("button").nth(1).click()  # the second example: chelsea.jpg
    page.wait_for_function("() => (document.querySelector('#vd-image img') || {}).src?.includes('chelsea')")


def test_example_questions_are_answered_once_then_from_the_cache(page):
    examples = page.locator("#vd-chat-examples").get_by_role("button")
    examples.nth(0).click()
    page.locator("#vd-chatbot .message.user").get_by_text("What animal is this?").wait_for()
    page.wait_for_function("() => { const bots = document.querySelectorAll('#vd-chatbot .message.bot');"
                           " return bots.length === 1 && bots[0].innerText.trim().length > 0; }")
    first = bot_texts(page)
    assert user_images(page) == 1
    examples.nth(1).click()
    page.locator("#vd-chatbot .message.user").get_by_text("What is in the cup?").wait_for()
    page.wait_for_function("() => document.querySelectorAll('#vd-chatbot .message.bot').length === 1 &&"
                           " document.querySelector('#vd-chatbot .message.bot').innerText.trim().length > 0")
    start = time.perf_counter()
    examples.nth(0).click()
    page.locator("#vd-chatbot .message.user").get_by_text("What animal is this?").wait_for()
    page.wait_for_function("t => document.querySelector('#vd-chatbot .message.bot')?.innerText.trim() === t",
                           arg=first[0])
    assert time.perf_counter() - start < 3  # from the cache: no generation this time


def analyse(page, first: str = "#vd-pca .js-plotly-plot .scatterlayer") -> None:
    """Press Analyse; wait for `first` (shown with the tokens), then for the ablation captions that follow."""
    page.click("#vd-analyse")
    page.wait_for_selector(first)
    page.locator("#vd-align-stats").get_by_text("Random baseline").wait_for()
    page.wait_for_function("() => { const t = document.querySelector('#vd-abl-nearest textarea');"
                           " return t && t.value && !t.value.startsWith('generating'); }", timeout=TIMEOUT_MS)


def test_alignment_plot_and_token_map_render(page):
    settings(page, 8, 0, 0.9)  # short ablation captions: this test is about the figures
    page.get_by_role("tab", name="Alignment").click()
    analyse(page)  # the query adapter, left picked by the chat tests: a resampler has no map, and says why
    assert "No token map: the query adapter is a resampler" in page.locator("#vd-token-map-note").inner_text()
    assert not page.locator("#vd-token-map").is_visible()
    pick(page, "#vd-adapter", "mlp")
    page.locator("#vd-status-box").get_by_text(f"{shipped_image_tokens('mlp')} image tokens").wait_for()
    analyse(page, "#vd-token-map .js-plotly-plot .heatmaplayer")
    assert page.locator("#vd-token-map svg image").count() >= 2  # the heatmap and the photo under it
    assert "7\u00d77 grid" in page.locator("#vd-token-map-note").inner_text()
    page.locator("#vd-token-map .nsewdrag").first.hover(position={"x": 60, "y": 60})
    hover = page.locator("#vd-token-map .hoverlayer .hovertext")
    hover.wait_for()
    assert "token 0" in hover.text_content() and hover.locator("tspan.line").count() >= 6  # top five words
    page.locator("#vd-agg-table").scroll_into_view_if_needed()
    page.wait_for_function("() => (document.querySelector('#vd-agg-table').innerText.match(/-?0\\.\\d+/g) || [])"
                           ".length >= 10")  # ten cosines (the grid is virtualised: rows are not all <tr>)
    page.evaluate("window.scrollTo(0, 0)")
    page.wait_for_timeout(1000)
    shot(page, "alignment")


def test_compare_tab_puts_adapters_side_by_side(page):
    page.get_by_role("tab", name="Compare").click()
    page.click("#vd-compare-run")
    page.wait_for_function("() => document.querySelectorAll('#vd-compare-board .vd-card .vd-stats b').length >= 12")
    cards = page.locator("#vd-compare-board .vd-card")
    assert cards.count() == 3
    assert all(card.locator(".vd-caption").inner_text().strip() for card in cards.all())
    shot(page, "compare")


def test_models_tab_shows_the_leaderboard_and_lists_the_combinations(page):
    page.get_by_role("tab", name="Models").click()
    table = page.locator("#vd-models-table table")
    table.wait_for()
    assert table.locator("tbody tr").count() >= 8
    board = page.locator("#vd-leaderboard")
    assert "shapes colour + shape" in board.inner_text() and "recipe" in board.inner_text()
    assert "not directly comparable" in page.locator("#vd-leaderboard-note").inner_text()
    page.wait_for_timeout(500)
    shot(page, "models")


def test_every_model_card_shows_its_loss_curve(page):
    from vlm_demo.ui.cards import shipped_cards

    page.get_by_role("tab", name="Models").click()
    names = [card.name for card in shipped_cards() if card.loss_curve]
    assert names
    for name in names:
        pick(page, "#vd-card-picker", name)
        page.wait_for_function("() => { const img = document.querySelector('#vd-card-text img');"
                               " return img && img.complete && img.naturalWidth > 100; }")  # decoded, not broken
        assert page.locator("#vd-card-text img").count() == 1 and not page.locator("#vd-loss-curve").is_visible()
    page.locator("#vd-card-text img").scroll_into_view_if_needed()
    page.wait_for_timeout(500)
    shot(page, "model-card")


def test_screenshots_are_kept():
    names = {path.stem for path in SHOTS.glob("*.png")}
    assert {"chat", "compare", "alignment", "models"} <= names
    assert shutil.which("chromium") or Path(CHROMIUM).exists()
