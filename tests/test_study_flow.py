"""The participant flow against a real SQLite store and the real engine: consent, resume, isolation, export."""

from __future__ import annotations

import csv
import json
import sqlite3
import threading
from datetime import datetime
from pathlib import Path

import pytest
from study_fixtures import BETWEEN, answer_for, load, make_app, run_participant

from dermchat.engine import DermChat
from dermchat.request import TurnRequest
from dermchat.study.assignment import assign
from dermchat.study.cli import main as study_cli
from dermchat.study.definition import load_study
from dermchat.study.session import FlowError, StudyFlow, normalise_code
from dermchat.study.store import StudyStore
from dermchat.study.summary import summarise, t_interval


@pytest.fixture()
def app(tmp_path: Path, ham_dir: Path) -> DermChat:
    return make_app(tmp_path / "turns")


@pytest.fixture()
def store(tmp_path: Path) -> StudyStore:
    return StudyStore(tmp_path / "study.sqlite")


@pytest.fixture()
def flow(store: StudyStore, ham_dir: Path) -> StudyFlow:
    return StudyFlow(load(), store)


def test_declined_consent_records_nothing(flow: StudyFlow, store: StudyStore) -> None:
    state = flow.consent(flow.start(), False)
    assert state.stage == "declined" and state.code is None
    with pytest.raises(FlowError):
        flow.enter_code(state, None)  # no way to continue from a declined consent
    assert store.counts() == {"participants": 0, "events": 0, "answers": 0, "images": 0}


def test_consent_without_code_records_nothing(flow: StudyFlow, store: StudyStore) -> None:
    state = flow.consent(flow.start(), True)
    assert state.stage == "code"
    assert sum(store.counts().values()) == 0


def test_names_are_not_accepted_as_codes(flow: StudyFlow) -> None:
    state = flow.consent(flow.start(), True)
    for name in ["Alice Smith", "alice", "", "x1"]:
        with pytest.raises(FlowError):
            flow.enter_code(state, name if name else "   x")
    assert normalise_code(" p-017 ") == "P-017"


def test_full_participant_logs_every_turn_with_arm(flow: StudyFlow, store: StudyStore, app: DermChat) -> None:
    state = run_participant(flow, app)
    assert state.stage == "done"
    events = store.events(code=state.code)
    types = [e["type"] for e in events]
    assert types[:3] == ["consent", "code", "started"] and types[-1] == "finished"
    turns = [e for e in events if e["type"] == "turn"]
    assert len(turns) == 6
    for turn in turns:
        result = turn["payload"]["result"]
        assert len(turn["payload"]["input_sha256"]) == 64 and result["image_sha256"] == turn["payload"]["input_sha256"]
        assert turn["payload"]["providers"]["diagnoser"] == {"id": "study-test-diagnoser", "version": "t1"}
        assert set(turn["payload"]["timings_ms"]) >= {"diagnosis", "explanation"}
        shown = turn["payload"]["shown"]
        assert (shown["references"] > 0) == (turn["arm"] == "with_references")
    assert store.participant("reference_images_within", state.code).status == "done"  # type: ignore[union-attr]
    assert store.counts()["images"] == 0  # the study did not opt in to storing images


def test_resume_after_interruption_continues_where_it_stopped(store: StudyStore, app: DermChat, ham_dir: Path) -> None:
    first = StudyFlow(load(), store)
    stopped = run_participant(first, app, stop_after=2)
    assert stopped.step == 2
    list(first.run_case(stopped, app))  # the third case was shown, then the browser was closed
    second = StudyFlow(load(), store)  # a fresh page (and server object)
    resumed = second.enter_code(second.consent(second.start(), True), stopped.code.lower())  # type: ignore[union-attr]
    assert resumed.code == stopped.code and resumed.step == 2 and resumed.stage == "case"
    replay = list(second.run_case(resumed, app))
    assert len(replay) == 1 and replay[0].data == {"replayed": True}  # the same answer, not a new run
    assert len([e for e in store.events(code=stopped.code) if e["type"] == "turn"]) == 3
    state = resumed
    while state.stage != "done":
        if state.stage == "case":
            list(second.run_case(state, app))
        state = second.submit(state, {item.id: answer_for(item) for item in second.items(state)})
    completed = [e["step"] for e in store.events(code=stopped.code) if e["type"] == "step_completed"]
    assert sorted(completed) == list(range(len(state.steps)))  # every step exactly once


def test_answers_are_validated(flow: StudyFlow, app: DermChat) -> None:
    state = flow.enter_code(flow.consent(flow.start(), True), None)
    with pytest.raises(FlowError, match="wait for DermChat"):
        flow.submit(state, {"guess": "I don't know", "worry": 3, "see_doctor": 3})
    list(flow.run_case(state, app))
    with pytest.raises(FlowError) as info:
        flow.submit(state, {"guess": "a bad guess", "worry": 9, "see_doctor": 3})
    assert len(info.value.messages) == 2
    with pytest.raises(FlowError, match="Please answer"):
        flow.submit(state, {"guess": "I don't know", "worry": 3})
    assert flow.submit(state, {"guess": "I don't know", "worry": "3 – x", "see_doctor": 1}).step == 1


def test_concurrent_participants_are_isolated(store: StudyStore, app: DermChat, ham_dir: Path) -> None:
    flow = StudyFlow(load(), store)
    states: dict[int, object] = {}
    errors: list[BaseException] = []

    def one(index: int) -> None:
        try:
            states[index] = run_participant(flow, app, index)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    codes = {s.code for s in states.values()}  # type: ignore[attr-defined]
    assert len(codes) == 6
    seqs = sorted(p["seq"] for p in store.participants())
    assert seqs == list(range(6))  # enrolment numbers are unique and gap-free under concurrency
    for index, state in states.items():
        mine = store.events(code=state.code)  # type: ignore[attr-defined]
        record = store.participant("reference_images_within", state.code)  # type: ignore[attr-defined]
        assert record is not None
        turns = [e for e in mine if e["type"] == "turn"]
        assert [e["arm"] for e in turns] == [s.arm for s in state.steps if s.kind == "case"]  # type: ignore[attr-defined]
        expected_worry = str(1 + index % 5)
        worry = {a["value"] for a in store.answers(code=state.code) if a["question_id"] == "worry"}  # type: ignore[attr-defined]
        assert worry == {expected_worry}  # nobody else's answers under this code


def test_export_round_trip_and_summary(tmp_path: Path, store: StudyStore, app: DermChat, ham_dir: Path) -> None:
    study = load()
    flow = StudyFlow(study, store)
    states = [run_participant(flow, app, i) for i in range(4)]
    out = tmp_path / "export"
    assert study_cli(["export", "--db", str(tmp_path / "study.sqlite"), "--out", str(out)]) == 0
    with (out / "case_answers.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(states) * len(study.cases.items) * len(study.case_questions)
    assert {(r["participant"], r["case_id"], r["question_id"]) for r in rows} == {
        (s.code, c.id, q.id) for s in states for c in study.cases.items for q in study.case_questions
    }
    guess = [r for r in rows if r["question_id"] == "guess"]
    assert all(r["ground_truth"] for r in guess) and {r["value_numeric"] for r in guess} <= {"0.0", "1.0"}
    with (out / "questionnaire_answers.csv").open() as fh:
        q_rows = list(csv.DictReader(fh))
    assert len(q_rows) == len(states) * (2 * 4 + 1)  # 'block' (4 items) after each arm + 1 final item
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    assert len(events) == len(store.events())
    with (out / "turns.csv").open() as fh:
        assert len(list(csv.DictReader(fh))) == len(states) * len(study.cases.items)

    summary = {(r.arm, r.scope, r.question_id): r for r in summarise(store.url)}
    trust = summary[("with_references", "block", "trust")]
    values = [1.0 + i % 7 for i in range(4)]  # what answer_for gives participant i
    mean, _sd, low, high = t_interval(values)
    assert trust.n == 4 and trust.mean == pytest.approx(mean)
    assert (trust.ci_low, trust.ci_high) == pytest.approx((low, high))
    assert low == pytest.approx(2.5 - 3.182446 * 1.290994 / 2, abs=1e-4)  # t(0.975, 3) * sd / sqrt(n)


def test_cli_summary_and_delete(
    tmp_path: Path, store: StudyStore, app: DermChat, ham_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flow = StudyFlow(load(), store)
    keep, gone = run_participant(flow, app, 0), run_participant(flow, app, 1)
    db = str(tmp_path / "study.sqlite")
    capsys.readouterr()
    assert study_cli(["summary", "--db", db, "--json"]) == 0
    assert {row["arm"] for row in json.loads(capsys.readouterr().out)} == {"with_references", "without_references"}
    assert study_cli(["delete", "--db", db, "--participant", gone.code]) == 0  # type: ignore[list-item]
    assert store.events(code=gone.code) == [] and store.answers(code=gone.code) == []
    assert store.participant("reference_images_within", gone.code) is None  # type: ignore[arg-type]
    assert store.events(code=keep.code) != []
    assert study_cli(["delete", "--db", db, "--participant", gone.code]) == 1  # type: ignore[list-item]
    assert study_cli(["summary", "--db", str(tmp_path / "missing.sqlite")]) == 2


def test_sqlite_is_in_wal_mode_and_stores_no_ip(
    tmp_path: Path, store: StudyStore, app: DermChat, ham_dir: Path
) -> None:
    run_participant(StudyFlow(load(), store), app)
    with sqlite3.connect(tmp_path / "study.sqlite") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        columns = {
            row[1]
            for table in ("participants", "events", "answers")
            for row in conn.execute(f"PRAGMA table_info({table})")
        }
    assert not {"ip", "ip_address", "host", "client_host"} & columns
    assert all(p["user_agent"] is None for p in store.participants())


def test_between_study_with_opt_in_images(tmp_path: Path, app: DermChat, ham_dir: Path) -> None:
    from PIL import Image

    # HAM JPEGs carry no EXIF, so give the case images some (a camera, a GPS-like tag, a comment) in a temp copy.
    (tmp_path / "images").mkdir()
    for case in load(BETWEEN).cases.items:
        exif = Image.Exif()
        exif[0x010F] = "SecretCam"  # Make
        exif[0x8825] = {2: (51.0, 30.0, 0.0)}  # GPSInfo: latitude
        Image.open(ham_dir / "images" / case.image).save(
            tmp_path / "images" / case.image, exif=exif, comment=b"clinic room 4"
        )
        assert b"SecretCam" in (tmp_path / "images" / case.image).read_bytes()
    study = load_study(BETWEEN, data_dir=tmp_path)
    study = study.model_copy(update={"privacy": study.privacy.model_copy(update={"store_images": True})})
    store = StudyStore(tmp_path / "between.sqlite")
    flow = StudyFlow(study, store)
    states = [run_participant(flow, app, i) for i in range(4)]
    assert sorted(s.steps[0].arm for s in states) == [
        "with_citations",
        "with_citations",
        "without_citations",
        "without_citations",
    ]
    for state in states:
        for turn in (e for e in store.events(code=state.code) if e["type"] == "turn"):
            assert (turn["payload"]["shown"]["citations"] > 0) == (turn["arm"] == "with_citations")
    assert store.counts()["images"] == len(study.cases.items)  # stored once per image, deduplicated by hash
    with sqlite3.connect(tmp_path / "between.sqlite") as conn:
        jpeg = conn.execute("SELECT jpeg FROM images LIMIT 1").fetchone()[0]
    assert jpeg[:2] == b"\xff\xd8" and b"Exif" not in jpeg and b"SecretCam" not in jpeg and b"clinic" not in jpeg


def test_the_flow_is_the_one_writer_of_study_turns(
    store: StudyStore, flow: StudyFlow, app: DermChat, ham_dir: Path
) -> None:
    """A case is stored once, by the flow, and an ordinary chat turn not at all."""
    app.run_turn_sync(TurnRequest(image=str(ham_dir / "images" / "ISIC_0024698.jpg")))  # an ordinary chat turn
    assert store.events() == []
    state = flow.enter_code(flow.consent(flow.start(), True), None)
    shown = [event.result for event in flow.run_case(state, app) if event.kind == "result"]
    turns = [e for e in store.events(code=state.code) if e["type"] == "turn"]
    assert len(turns) == 1 and len(shown) == 1 and shown[0] is not None
    assert turns[0]["payload"]["input_sha256"] == shown[0].image_sha256


def test_clicks_are_logged_and_counted_in_the_export(
    tmp_path: Path, store: StudyStore, flow: StudyFlow, app: DermChat
) -> None:
    from dermchat.study.export import tables

    state = flow.enter_code(flow.consent(flow.start(), True), None)
    list(flow.run_case(state, app))
    flow.click(state, "reference", 1, {"condition_id": "melanoma"})
    flow.click(state, "citation", 0, {"url": "https://dermnetnz.org/"})
    flow.click(state, "citation", 0, {"url": "https://dermnetnz.org/"})
    turns = tables(store)["turns.csv"]
    assert [(t["reference_clicks"], t["citation_clicks"]) for t in turns] == [(1, 2)]
    clicks = [e for e in store.events(code=state.code) if e["type"].endswith("_click")]
    assert {(e["case_id"], e["arm"]) for e in clicks} == {(state.steps[0].ref, state.steps[0].arm)}


def test_a_withdrawn_participant_cannot_add_data_from_an_open_page(
    flow: StudyFlow, store: StudyStore, app: DermChat
) -> None:
    """The researcher deletes a code while the participant's page is still open: nothing may reappear under it."""
    state = flow.enter_code(flow.consent(flow.start(), True), None)
    list(flow.run_case(state, app))
    assert store.delete_participant(state.code) > 0  # type: ignore[arg-type]
    with pytest.raises(FlowError, match="deleted"):
        flow.click(state, "citation", 0, {"url": "https://dermnetnz.org/"})
    with pytest.raises(FlowError, match="deleted"):
        list(flow.run_case(state, app))
    with pytest.raises(FlowError, match="deleted"):
        flow.submit(state, {item.id: answer_for(item) for item in flow.items(state)})
    with pytest.raises(KeyError):  # the plugin's writer (and any other) is refused by the store itself
        store.log("reference_images_within", state.code, "turn", {}, step=1)  # type: ignore[arg-type]
    assert store.events(code=state.code) == [] and store.answers(code=state.code) == []


def test_resume_refuses_a_schedule_that_changed_since_enrolment(
    store: StudyStore, app: DermChat, ham_dir: Path
) -> None:
    """Editing the cases mid-study shifts step numbers: a returning participant must not be silently re-mapped."""
    study = load()
    stopped = run_participant(StudyFlow(study, store), app, stop_after=2)
    extra = study.cases.items[0].model_copy(update={"id": "case_extra"})
    edited = study.model_copy(update={"cases": study.cases.model_copy(update={"items": [*study.cases.items, extra]})})
    assert assign(edited, 0).arm_order == assign(study, 0).arm_order  # the old check (arm order) cannot see it
    flow = StudyFlow(edited, store)
    with pytest.raises(FlowError, match="earlier version"):
        flow.enter_code(flow.consent(flow.start(), True), stopped.code)
    again = StudyFlow(study, store)  # the unchanged study still resumes
    assert again.enter_code(again.consent(again.start(), True), stopped.code).step == 2


def test_export_times_each_answer_from_when_the_answer_was_last_shown(
    store: StudyStore, app: DermChat, ham_dir: Path
) -> None:
    """Response time is a core trust measure: after a resume it must not include the time the participant was away."""
    from dermchat.study.export import CASE_COLUMNS, tables

    first = StudyFlow(load(), store)
    state = first.enter_code(first.consent(first.start(), True), None)
    list(first.run_case(state, app))
    state = first.submit(state, {item.id: answer_for(item) for item in first.items(state)})  # case 1: no break
    list(first.run_case(state, app))  # case 2 shown, then the participant leaves
    second = StudyFlow(load(), store)
    resumed = second.enter_code(second.consent(second.start(), True), state.code)
    assert [e.data for e in second.run_case(resumed, app)] == [{"replayed": True}]
    with pytest.raises(FlowError):  # an incomplete form: the page then re-renders the same answer...
        second.submit(resumed, {})
    list(second.run_case(resumed, app))  # ...which is no new display: the clock keeps running
    second.submit(resumed, {item.id: answer_for(item) for item in second.items(resumed)})

    events = store.events(code=state.code)
    turn_at = {e["step"]: e["created_at"] for e in events if e["type"] == "turn"}
    replayed = [e for e in events if e["type"] == "turn_replayed"]
    assert [(e["step"], e["case_id"], e["arm"]) for e in replayed] == [(1, state.steps[1].ref, state.steps[1].arm)]
    rows = {r["step"]: r for r in tables(store)["case_answers.csv"]}
    assert {"shown_at", "response_ms"} <= set(CASE_COLUMNS)
    assert rows[0]["shown_at"] == turn_at[0]
    assert rows[1]["shown_at"] == replayed[0]["created_at"] > turn_at[1]  # timed from the replay, not the first run
    for row in rows.values():
        spent = datetime.fromisoformat(row["answered_at"]) - datetime.fromisoformat(row["shown_at"])
        assert row["response_ms"] == pytest.approx(spent.total_seconds() * 1000, abs=0.1) and row["response_ms"] >= 0


def test_deleted_data_does_not_linger_in_the_sqlite_files(
    tmp_path: Path, store: StudyStore, flow: StudyFlow, app: DermChat
) -> None:
    """Withdrawal means erasure: a copy of the database file handed on later must not hold the deleted rows."""
    state = flow.enter_code(flow.consent(flow.start(), True), None)
    list(flow.run_case(state, app))
    flow.submit(state, {"guess": "I don't know", "worry": 2, "see_doctor": 2})
    flow.click(state, "citation", 0, {"url": "https://dermnetnz.org/withdrawn-marker"})
    keep = flow.enter_code(flow.consent(flow.start(), True), None)  # someone else's data stays readable
    assert store.delete_participant(state.code) > 0  # type: ignore[arg-type]
    files = [p for p in tmp_path.glob("study.sqlite*") if p.is_file()]
    raw = b"".join(p.read_bytes() for p in files)
    assert (raw.count(state.code.encode()), raw.count(b"withdrawn-marker")) == (0, 0)  # type: ignore[union-attr]
    assert store.participant("reference_images_within", keep.code) is not None  # type: ignore[arg-type]


def test_a_user_agent_recorded_by_opt_in_reaches_the_export(store: StudyStore) -> None:
    """A study that opts into ``record_user_agent`` (device type can matter for how images are seen) must find
    it in participants.csv; one that does not, gets an empty column."""
    from dermchat.study.export import tables

    study = load()
    opted_in = study.model_copy(update={"privacy": study.privacy.model_copy(update={"record_user_agent": True})})
    agent = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)"
    for flow in (StudyFlow(opted_in, store), StudyFlow(study, store)):
        flow.enter_code(flow.consent(flow.start(), True), None, user_agent=agent)
    rows = tables(store)["participants.csv"]
    assert [row["user_agent"] for row in rows] == [agent, ""]


def test_withdrawal_also_deletes_the_turn_folders_named_after_the_code(
    tmp_path: Path, store: StudyStore, app: DermChat, ham_dir: Path
) -> None:
    """Rows are not all: each study turn leaves a ``<study>-<code>-<step>`` folder (derived images) on disk."""
    from dermchat.engine import turns_dir
    from dermchat.study.withdraw import turn_folders, withdraw

    flow = StudyFlow(load(), store)
    gone, keep = run_participant(flow, app, 0), run_participant(flow, app, 1)
    root = turns_dir(app.settings)
    assert turn_folders(root, "reference_images_within", gone.code)  # type: ignore[arg-type]
    done = withdraw(store, gone.code, None, root)  # type: ignore[arg-type]
    assert done.rows > 0 and done.folders == len(load().cases.items)
    assert turn_folders(root, "reference_images_within", gone.code) == []  # type: ignore[arg-type]
    assert len(turn_folders(root, "reference_images_within", keep.code)) == done.folders  # type: ignore[arg-type]
    assert withdraw(store, gone.code, None, root) == type(done)(rows=0, folders=0)  # type: ignore[arg-type]


def test_arm_order_balance_counts_finished_of_started() -> None:
    from dermchat.study.summary import arm_order_balance

    rows = [
        {"arm_order": "a|b", "status": "done"},
        {"arm_order": "a|b", "status": "active"},
        {"arm_order": "b|a", "status": "done"},
    ]
    assert arm_order_balance(rows) == "`a → b` 1 / 2 · `b → a` 1 / 1"
    assert arm_order_balance([]) == ""
