"""A real browser (Debian Chromium via playwright) uploads a photo, switches audience and reads the answer."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from app_fixtures import live_app  # noqa: F401 - fixture

pytestmark = pytest.mark.browser
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
REPO = Path(__file__).resolve().parent.parent
# The README's screenshot is refreshed only on request, so a test run leaves the checkout clean.
SCREENSHOT = REPO / ("docs" if os.environ.get("DERMCHAT_UPDATE_SCREENSHOT") else "tests/artifacts") / "screenshot.png"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def page(live_app):  # noqa: F811
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (make test installs it: apt-get install chromium)")
    playwright_api = pytest.importorskip("playwright.sync_api")
    url, _ = live_app
    with playwright_api.sync_playwright() as pw, tempfile.TemporaryDirectory() as profile:
        context = pw.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, args=ARGS, headless=True, viewport={"width": 1400, "height": 1100}
        )
        page = context.new_page()
        page.goto(url, wait_until="load")
        page.wait_for_selector("#message textarea", timeout=60_000)
        yield page
        context.close()


def test_upload_switch_audience_and_read_the_answer(page, ham_image: Path) -> None:
    page.set_input_files("#message input[type=file]", str(ham_image))
    page.wait_for_timeout(500)
    page.fill("#message textarea", "Is this mole dangerous?")
    page.keyboard.press("Enter")
    notice = "not a diagnosis"
    page.wait_for_function(
        "(t) => document.querySelector('#chatbot') && document.querySelector('#chatbot').innerText.toLowerCase().includes(t)",
        arg=notice, timeout=240_000,
    )
    chat_text = page.inner_text("#chatbot")
    assert "Checking photo quality" in chat_text
    assert "likely one of" in chat_text.lower() or "no list of likely conditions" in chat_text.lower()
    # The side panel ranks conditions with bars, without a big top-class title that reads like a verdict.
    assert page.locator("#differential meter").count() >= 2
    assert page.locator("#differential [data-testid=label-output-value]").count() == 0
    page.get_by_role("radio", name="clinician").check()
    page.wait_for_function(
        "() => document.querySelector('#chatbot').innerText.includes('Probability')", timeout=30_000
    )
    assert "Probability" in page.inner_text("#chatbot")
    page.wait_for_timeout(1000)
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    assert SCREENSHOT.stat().st_size > 10_000


def test_details_about_the_spot_reach_the_model(page, ham_dir: Path) -> None:
    page.get_by_role("button", name="New conversation").click()
    page.get_by_text("About the spot (optional)").click()
    page.fill("#patient-age input", "80")
    page.click("#patient-sex input")
    page.get_by_role("option", name="male", exact=True).click()
    page.fill("#patient-site input", "scalp")
    page.keyboard.press("Enter")
    page.get_by_role("radio", name="clinician").check()
    page.set_input_files("#message input[type=file]", str(ham_dir / "images" / "ISIC_0027419.jpg"))
    page.wait_for_timeout(500)
    page.fill("#message textarea", "And with these details?")
    page.keyboard.press("Enter")
    page.wait_for_function(
        "() => document.querySelector('#chatbot').innerText.includes('were weighed in with the image')",
        timeout=40_000,
    )
    assert "age 80, male, scalp" in page.inner_text("#chatbot")
    # A new conversation may be about someone else: the details start empty again.
    page.get_by_role("button", name="New conversation").click()
    page.wait_for_function("() => document.querySelector('#patient-age input').value === ''", timeout=10_000)
    assert page.input_value("#patient-site input") == ""


def fresh_session(page) -> None:
    """A reload starts a new Gradio session: empty chat, default audience, details cleared."""
    page.reload(wait_until="load")
    page.wait_for_selector("#message textarea", timeout=60_000)


def test_choosing_clinician_before_the_first_photo_shows_no_error(page) -> None:
    fresh_session(page)
    page.get_by_role("radio", name="clinician").check()
    page.wait_for_timeout(1500)
    assert page.get_by_text("Error", exact=True).count() == 0, "red 'Error' badges over the chat and the panel"


def test_an_impossible_age_is_named_and_the_chat_goes_on(page, ham_dir: Path) -> None:
    fresh_session(page)
    page.get_by_text("About the spot (optional)").click()
    page.fill("#patient-age input", "500")  # a typo for 50
    page.set_input_files("#message input[type=file]", str(ham_dir / "images" / "ISIC_0027190.jpg"))
    page.wait_for_timeout(500)
    page.fill("#message textarea", "Should I worry?")
    page.keyboard.press("Enter")
    page.wait_for_function(
        "() => document.querySelector('#chatbot').innerText.includes('Not taken into account')", timeout=60_000
    )
    assert "age '500'" in page.inner_text("#chatbot")
    page.wait_for_function("() => !document.querySelector('#message textarea').disabled", timeout=10_000)
    # On a phone the "how to tell them apart" table keeps whole words (it scrolls sideways instead).
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(500)
    widths = page.eval_on_selector_all("#contrast th", "els => els.slice(1).map(e => e.getBoundingClientRect().width)")
    page.set_viewport_size({"width": 1400, "height": 1100})
    assert widths and min(widths) >= 100, f"condition columns squeezed to {widths} px: words break mid-way"
