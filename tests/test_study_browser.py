"""A real browser (Debian Chromium via playwright) opens ``?study=<id>``, consents, reads a case and answers it.

What only a browser can check: the URL parameter picks the study, the chained events (code -> run the case)
fire, layout visibility follows the flow, and clicks on a reference image (a gallery ``select``) and on a
source are logged.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr
import pytest
from app_fixtures import chromium_page, require_chromium
from study_fixtures import BETWEEN, load, make_app

from dermchat.study.store import StudyStore
from dermchat_ui.study import build_study_tab

pytestmark = pytest.mark.browser
SID = "reference_images_within"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, ham_dir: Path) -> Iterator[tuple[str, StudyStore]]:
    require_chromium()
    tmp = tmp_path_factory.mktemp("study-browser")
    db = f"sqlite:///{tmp / 'browser.sqlite'}"
    studies = {s.id: s for s in (load(), load(BETWEEN))}
    with gr.Blocks() as demo:
        build_study_tab(make_app(tmp / "turns"), "citations_between", studies=studies, database_url=db)
    demo.queue()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True)
    try:
        yield url, StudyStore(db)
    finally:
        demo.close()


def wait_text(page: Any, selector: str, text: str, timeout: int = 60_000) -> None:
    """Wait until ``selector`` exists and its text contains ``text`` (case-insensitive)."""
    page.wait_for_function(
        "([sel, t]) => ((document.querySelector(sel) || {}).innerText || '').toLowerCase().includes(t)",
        arg=[selector, text.lower()],
        timeout=timeout,
    )


def test_study_url_parameter_consent_case_and_clicks(live: tuple[str, StudyStore]) -> None:
    url, store = live
    with chromium_page(1300, 1400) as page:
        page.goto(f"{url}?study={SID}", wait_until="load")
        page.wait_for_selector(f"#study-{SID}", state="visible", timeout=60_000)
        assert not page.is_visible("#study-citations_between")  # the URL parameter beat the default study

        page.click(f"#{SID}-consent")  # without ticking the box: nothing happens but a reminder
        wait_text(page, f"#{SID}-error", "tick the box")
        assert store.counts()["participants"] == 0
        page.locator(f"#{SID}-agree input[type=checkbox]").check()
        page.click(f"#{SID}-consent")
        page.wait_for_selector(f"#{SID}-new-code", state="visible", timeout=30_000)
        page.click(f"#{SID}-new-code")
        wait_text(page, f"#{SID}-answer", "not a diagnosis", 120_000)
        assert "Case 1 of 6" in page.inner_text(f"#{SID}-case-header")
        code = page.inner_text(f"#{SID}-case-header").split("code: ")[1].split(" ")[0]
        participant = store.participant(SID, code)
        assert participant is not None and participant.arm_order[0] == "with_references"  # first Latin-square row

        page.locator(f"#{SID}-references").get_by_label("Thumbnail 1 of 2").click()  # open a reference image
        page.get_by_label("[1] DermNet overview").check()  # open a source
        wait_text(page, f"#{SID}-source-link", "open the source")
        # Answer options: the seven lesion types the study's photos can be (+ "I don't know"), not 46.
        assert page.locator(f"#{SID}-case-guess input[type=radio]").count() == 8
        page.get_by_label("I don't know").check()
        # Two separate scales, every point labelled.
        page.locator(f"#{SID}-case-worry").get_by_label("3 – Moderately worried", exact=True).check()
        page.locator(f"#{SID}-case-see_doctor").get_by_label("2 – At my next routine check-up", exact=True).check()
        # Rating the answer goes to the study database.
        page.locator(f"#{SID}-rating").get_by_label("Wrong or unsafe").check()
        page.fill(f"#{SID}-feedback-comment textarea", "The second photo looked different")
        page.click(f"#{SID}-send-feedback")
        wait_text(page, f"#{SID}-feedback-note", "feedback was saved")
        page.click(f"#{SID}-next-case")
        wait_text(page, f"#{SID}-case-header", "case 2 of 6")
    types = [e["type"] for e in store.events(code=code)]
    assert {"reference_click", "citation_click", "step_completed", "turn", "feedback"} <= set(types)
    answers = {a["question_id"]: a["value"] for a in store.answers(code=code)}
    assert answers == {"guess": "I don't know", "worry": "3", "see_doctor": "2"}
    [feedback] = [e["payload"] for e in store.events(code=code) if e["type"] == "feedback"]
    assert (feedback["rating"], feedback["comment"]) == ("flag", "The second photo looked different")


def test_study_mode_offers_only_the_study(tmp_path: Path, ham_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``python app.py --study ID``: no Chat or Plugins tab to click mid-study, even with ``?study=`` of another."""
    from dermchat_ui.app import CSS, build_demo

    require_chromium()
    monkeypatch.setenv("DERMCHAT_STUDY_DATABASE_URL", f"sqlite:///{tmp_path / 'sealed.sqlite'}")
    demo = build_demo(make_app(tmp_path / "turns"), SID)
    demo.queue()
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True, css=CSS)
    try:
        with chromium_page(390, 844) as page:
            page.goto(f"{url}?study=citations_between", wait_until="load")
            page.wait_for_selector(f"#study-{SID}", state="visible", timeout=60_000)
            tabs = page.get_by_role("tab").all_inner_texts()
            assert not page.is_visible("#study-citations_between") and not page.is_visible("#chatbot")
    finally:
        demo.close()
    assert [t.strip() for t in tabs] == ["Study", "Researcher"], tabs
