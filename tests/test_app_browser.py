"""The app in a real browser (Debian chromium driven by playwright): every tab's job, with a screenshot of each."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from app_helpers import EXAMPLES, ROOT, serve_app

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
    """Until the chat shows `count` assistant messages, the last one with text."""
    page.wait_for_function("count => { const bots = document.querySelectorAll('#vd-chatbot .message.bot');"
                           " return bots.length >= count && bots[bots.length - 1].innerText.trim().length > 0; }",
                           arg=count)


def test_chat_upload_pick_an_adapter_and_get_a_caption(page):
    page.set_input_files("#vd-image input[type=file]", str(EXAMPLES / "chelsea.jpg"))
    pick(page, "#vd-adapter", "query")
    status = page.locator("#vd-status-box")
    status.get_by_text("32 image tokens").wait_for()  # the query adapter is loaded
    assert "Untrained adapter" in status.inner_text() or "Trained adapter" in status.inner_text()
    page.click("#vd-describe")
    page.locator("#vd-chatbot .message.user").get_by_text("Describe this image.").wait_for()
    wait_for_answer(page, 1)
    page.fill("#vd-message textarea", "What colour is it?")
    page.click("#vd-send")
    page.locator("#vd-chatbot .message.user").get_by_text("What colour is it?").wait_for()
    wait_for_answer(page, 2)
    page.wait_for_function("() => !document.querySelector('#vd-send').disabled")  # the answer is complete
    page.wait_for_timeout(500)
    shot(page, "chat")


def test_a_bad_upload_shows_the_reason(page, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("this is not a picture")
    page.set_input_files("#vd-image input[type=file]", str(bad))
    toast = page.get_by_text("This upload cannot be used: not an image in a format this app reads")
    toast.first.wait_for()
    page.wait_for_timeout(600)  # the toast's entry animation
    shot(page, "bad-upload")
    assert page.locator("#vd-image img").count() == 0  # the bad file was taken out of the image box
    page.locator("#vd-examples").get_by_role("button").nth(1).click()  # the second example: chelsea.jpg
    page.wait_for_function("() => (document.querySelector('#vd-image img') || {}).src?.includes('chelsea')")


def test_alignment_plot_renders(page):
    page.get_by_role("tab", name="Alignment").click()
    page.click("#vd-analyse")
    page.wait_for_selector("#vd-pca .js-plotly-plot .scatterlayer")
    page.locator("#vd-align-stats").get_by_text("Random baseline").wait_for()
    page.wait_for_function("() => { const t = document.querySelector('#vd-abl-nearest textarea');"
                           " return t && t.value && !t.value.startsWith('generating'); }", timeout=TIMEOUT_MS)
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


def test_models_tab_lists_the_combinations(page):
    page.get_by_role("tab", name="Models").click()
    table = page.locator("#vd-models-table table")
    table.wait_for()
    assert table.locator("tbody tr").count() >= 8
    page.wait_for_timeout(500)
    shot(page, "models")


def test_screenshots_are_kept():
    names = {path.stem for path in SHOTS.glob("*.png")}
    assert {"chat", "compare", "alignment", "models"} <= names
    assert shutil.which("chromium") or Path(CHROMIUM).exists()
