"""The study pages through the real Gradio app, driven over HTTP by ``gradio_client`` like a browser would.

One server per module (startup is the slow part): participant pages + researcher page, a real SQLite store,
the real engine with the in-test pipeline plugin.
"""

from __future__ import annotations

import base64
import io
import os
import re
import socket
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError
from study_fixtures import load, make_app

from dermchat.study.definition import ChoiceItem, LikertItem
from dermchat.study.store import StudyStore
from dermchat_ui.researcher import PASSWORD_ENV, build_researcher_tab
from dermchat_ui.study import StudyPage, build_study_tab

SID = "reference_images_within"
PASSWORD = "correct horse battery staple"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    def __init__(self, url: str, page: StudyPage, store: StudyStore) -> None:
        self.url, self.page, self.store = url, page, store

    def client(self) -> Client:
        return Client(self.url, verbose=False)

    def field(self, outputs: tuple[Any, ...], component: Any) -> Any:
        """The value the server returned for ``component`` (the client leaves out State, layout and buttons)."""
        returned = [c for c in self.page.page_outputs if not getattr(c, "skip_api", False)]
        return outputs[returned.index(component)]

    def stage(self, outputs: tuple[Any, ...]) -> str:
        return str(self.field(outputs, self.page.stage))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, ham_dir: Path) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("study-ui")
    db = f"sqlite:///{tmp / 'ui.sqlite'}"
    previous = os.environ.get(PASSWORD_ENV)
    os.environ[PASSWORD_ENV] = PASSWORD
    studies = {SID: load()}
    app = make_app(tmp / "turns")
    with gr.Blocks() as demo:
        pages = build_study_tab(app, SID, studies=studies, database_url=db)
        researcher = build_researcher_tab(app, SID, studies=studies, database_url=db)
    assert researcher is not None
    demo.queue()
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=_free_port(), quiet=True)
    try:
        yield Server(url, pages[SID], StudyStore(db))
    finally:
        demo.close()
        if previous is None:
            os.environ.pop(PASSWORD_ENV, None)
        else:
            os.environ[PASSWORD_ENV] = previous


def answer(item: Any) -> Any:
    if isinstance(item, LikertItem):
        return 4
    if isinstance(item, ChoiceItem):
        return item.options()[0]
    return "it was fine"


def code_from(server: Server, outputs: tuple[Any, ...]) -> str:
    header = server.field(outputs, server.page.case_header)
    return header.split("**")[1]


def test_declined_consent_over_http_records_nothing(server: Server) -> None:
    before = server.store.counts()
    client = server.client()
    out = client.predict(False, api_name=f"/{SID}_consent")
    assert "tick the box" in server.field(out, server.page.error)
    out = client.predict(api_name=f"/{SID}_decline")
    assert server.stage(out) == "declined"
    out = client.predict(api_name=f"/{SID}_new_code")  # a crafted call cannot skip the declined consent
    assert "expected the code step" in server.field(out, server.page.error)
    assert server.store.counts() == before


def test_full_participant_through_the_app(server: Server) -> None:
    page, client = server.page, server.client()
    out = client.predict(True, api_name=f"/{SID}_consent")
    assert server.stage(out) == "code"
    out = client.predict("Alice", api_name=f"/{SID}_enter_code")
    assert "do not enter your name" in server.field(out, page.error)
    out = client.predict(api_name=f"/{SID}_new_code")
    assert server.stage(out).startswith("case:")
    code = code_from(server, out)
    seen_cases = 0
    while True:
        stage, _, ref = server.stage(out).partition(":")
        if stage == "case":
            seen_cases += 1
            assert f"Case {seen_cases} of 6" in server.field(out, page.case_header)
            answer_md, gallery, sources, _err = client.predict(api_name=f"/{SID}_run_case")
            assert "not a diagnosis" in answer_md.lower()
            assert "https://" not in answer_md  # sources are offered as a logged list, not bare links
            step = server.store.participant(SID, code)
            assert step is not None
            arm = [e for e in server.store.events(code=code) if e["type"] == "turn"][-1]["arm"]
            assert gallery["visible"] is (arm == "with_references")
            if arm == "with_references":
                assert len(gallery["value"]) == 2
            link = client.predict(sources["choices"][0][0], api_name=f"/{SID}_open_source")
            assert "dermnetnz.org" in link
            out = client.predict(*[answer(item) for item in page.study.case_questions], api_name=f"/{SID}_submit_case")
        elif stage == "questionnaire":
            questionnaire = page.study.questionnaire(ref)
            out = client.predict(*[answer(item) for item in questionnaire.items], api_name=f"/{SID}_submit_{ref}")
        else:
            break
        assert not server.field(out, page.error), server.field(out, page.error)
    assert seen_cases == 6
    assert server.stage(out) == "done" and code in server.field(out, page.done_md)
    record = server.store.participant(SID, code)
    assert record is not None and record.status == "done"
    events = server.store.events(code=code)
    assert sum(e["type"] == "citation_click" for e in events) == 6
    assert sum(e["type"] == "turn" for e in events) == 6
    assert len(server.store.answers(code=code)) == 6 * 3 + 2 * 4 + 1  # guess, worry, see_doctor per case


def test_resume_in_a_new_session_with_the_same_code(server: Server) -> None:
    page, client = server.page, server.client()
    client.predict(True, api_name=f"/{SID}_consent")
    out = client.predict(api_name=f"/{SID}_new_code")
    code = code_from(server, out)
    for _ in range(2):
        client.predict(api_name=f"/{SID}_run_case")
        out = client.predict(*[answer(item) for item in page.study.case_questions], api_name=f"/{SID}_submit_case")
    refreshed = server.client()  # a browser refresh: new session, empty state
    refreshed.predict(True, api_name=f"/{SID}_consent")
    out = refreshed.predict(code.lower(), api_name=f"/{SID}_enter_code")
    assert "Case 3 of 6" in server.field(out, page.case_header)
    assert code_from(server, out) == code


def test_researcher_page_needs_the_password(server: Server, tmp_path: Path) -> None:
    client = server.client()
    status, _password = client.predict("wrong", api_name="/researcher_unlock")
    assert status == "Wrong password."
    rows, text = client.predict("reference_images_within", api_name="/researcher_progress")
    assert "password" in text and not rows["data"]
    with pytest.raises(AppError):
        client.predict("reference_images_within", api_name="/researcher_export")

    client.predict(PASSWORD, api_name="/researcher_unlock")
    rows, text = client.predict("reference_images_within", api_name="/researcher_progress")
    codes = {row[0] for row in rows["data"]}
    assert len(codes) == len(server.store.participants(SID)) and "finished" in text
    assert "per arm order" in text and " / " in text  # abandoned participants unbalance arms: shown while recruiting
    link = client.predict("reference_images_within", api_name="/researcher_export")
    payload = re.search(r"data:application/zip;base64,([A-Za-z0-9+/=]+)", link)  # the zip itself, not a file URL
    assert payload is not None
    with zipfile.ZipFile(io.BytesIO(base64.b64decode(payload.group(1)))) as zf:
        assert set(zf.namelist()) == {
            "participants.csv",
            "case_answers.csv",
            "questionnaire_answers.csv",
            "turns.csv",
            "feedback.csv",
            "events.jsonl",
        }
        assert len(zf.read("participants.csv").decode().splitlines()) == len(codes) + 1
    victim = sorted(codes)[0]
    message = client.predict("reference_images_within", victim, False, api_name="/researcher_delete")
    assert "confirmation" in message and server.store.participant(SID, victim) is not None
    message = client.predict("reference_images_within", victim, True, api_name="/researcher_delete")
    assert "Deleted" in message and server.store.participant(SID, victim) is None
    assert server.store.events(code=victim) == []


def test_startup_rejects_a_malformed_selected_study_with_its_line(tmp_path: Path, ham_dir: Path) -> None:
    from dermchat.study.definition import StudyDefinitionError
    from dermchat_ui.study import load_studies

    source = (Path(__file__).resolve().parent.parent / "studies" / "citations_between.yaml").read_text()
    line = next(i for i, text in enumerate(source.splitlines(), 1) if text.startswith("design:"))
    (tmp_path / "good.yaml").write_text(source)
    bad = tmp_path / "bad.yaml"
    bad.write_text(source.replace("id: citations_between", "id: broken").replace("design: between", "design: sideways"))
    studies, selected = load_studies(None, tmp_path)  # a broken *other* file is left out, not fatal
    assert set(studies) == {"citations_between"} and selected is None
    with pytest.raises(StudyDefinitionError, match=f"bad.yaml:{line}: design"):
        load_studies(str(bad), tmp_path)
    with gr.Blocks(), pytest.raises(StudyDefinitionError):
        build_study_tab(make_app(tmp_path / "turns"), str(bad), studies_dir=tmp_path)


def test_a_deleted_code_gets_a_clear_message_on_its_open_page(server: Server) -> None:
    page, client = server.page, server.client()
    client.predict(True, api_name=f"/{SID}_consent")
    code = code_from(server, client.predict(api_name=f"/{SID}_new_code"))
    client.predict(api_name=f"/{SID}_run_case")
    assert server.store.delete_participant(code, SID) > 0  # withdrawn while the page is open
    _answer, _gallery, _sources, error = client.predict(api_name=f"/{SID}_run_case")
    assert "has been deleted" in error
    out = client.predict(*[answer(item) for item in page.study.case_questions], api_name=f"/{SID}_submit_case")
    assert "has been deleted" in server.field(out, page.error)
    assert server.store.events(code=code) == [] and server.store.answers(code=code) == []
