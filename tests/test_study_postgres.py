"""The PostgreSQL path against a real local server (Debian's ``postgresql``), started for this module.

The server runs from a temporary folder on a free port (TCP on 127.0.0.1, socket in the temp folder) as the
``postgres`` user when the tests run as root, and is stopped afterwards. Where PostgreSQL is missing the
module installs it with apt when ``CI`` or ``DERMCHAT_INSTALL_POSTGRES=1`` is set, and otherwise skips with
the command to run.
"""

from __future__ import annotations

import csv
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from study_fixtures import load, make_app, run_participant

from dermchat.study.export import export
from dermchat.study.session import StudyFlow
from dermchat.study.store import ParticipantNotFound, StudyStore

pytestmark = pytest.mark.postgres
APT_LINE = "apt-get install -y postgresql"


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found else None


def _ensure_installed() -> Path:
    bin_dir = _pg_bin()
    may_install = os.environ.get("CI") or os.environ.get("DERMCHAT_INSTALL_POSTGRES") == "1"
    if bin_dir is None and may_install and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "update"], check=False, capture_output=True, timeout=300)
        subprocess.run(
            ["apt-get", "install", "-y", "postgresql"],
            check=False,
            capture_output=True,
            timeout=600,
            env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"),
        )
        bin_dir = _pg_bin()
    if bin_dir is None:
        pytest.skip(f"PostgreSQL not installed: run `{APT_LINE}` (or set DERMCHAT_INSTALL_POSTGRES=1)")
    return bin_dir


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    bin_dir = _ensure_installed()
    as_user: list[str] = []
    base = Path(tempfile.mkdtemp(prefix="dermchat-pg-"))
    if os.geteuid() == 0:  # initdb refuses to run as root
        if not shutil.which("runuser"):
            pytest.skip("running as root without `runuser`: cannot start PostgreSQL as the postgres user")
        shutil.chown(base, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = base / "data", _free_port()

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*as_user, *args], check=True, capture_output=True, text=True, timeout=120)

    try:
        run(str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")
        run(
            str(bin_dir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(base / "server.log"),
            "-w",
            "-t",
            "90",
            "-o",
            f"-p {port} -h 127.0.0.1 -k {base} -F",
            "start",
        )
    except subprocess.CalledProcessError as exc:
        log = (base / "server.log").read_text() if (base / "server.log").exists() else ""
        shutil.rmtree(base, ignore_errors=True)
        pytest.fail(f"could not start PostgreSQL: {exc.stderr}\n{log}")
    try:
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={port} user=postgres dbname=postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE dermchat_test")
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/dermchat_test"
    finally:
        subprocess.run(
            [*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
            capture_output=True,
            timeout=120,
        )
        shutil.rmtree(base, ignore_errors=True)


def test_participants_export_and_delete_on_postgres(pg_url: str, tmp_path: Path, ham_dir: Path) -> None:
    store = StudyStore(pg_url)
    assert store.engine.dialect.name == "postgresql"
    study = load()
    flow = StudyFlow(study, store)
    app = make_app(tmp_path / "turns")
    states = [run_participant(flow, app, i) for i in range(2)]
    partial = run_participant(flow, app, 2, stop_after=3)
    resumed = flow.enter_code(flow.consent(flow.start(), True), partial.code)
    assert resumed.step == 3 and resumed.stage == "questionnaire"  # 3 cases done: the block questionnaire is next

    written = export(pg_url, tmp_path / "export")
    with written["case_answers.csv"].open() as fh:
        rows = list(csv.DictReader(fh))
    finished = len(states) * len(study.cases.items) * len(study.case_questions)
    assert len(rows) == finished + 3 * len(study.case_questions)  # the partial participant answered 3 cases
    turn = next(e for e in store.events(code=states[0].code) if e["type"] == "turn")
    assert turn["payload"]["result"]["image_sha256"] == turn["payload"]["input_sha256"]

    assert store.delete_participant(states[1].code) > 0  # type: ignore[arg-type]
    assert store.events(code=states[1].code) == [] and store.answers(code=states[1].code) == []
    assert store.events(code=states[0].code) != []
    with pytest.raises(ParticipantNotFound):  # a page still open under the deleted code cannot write again
        store.log(study.id, states[1].code, "citation_click", {}, step=0)  # type: ignore[arg-type]
    assert store.events(code=states[1].code) == []


def test_concurrent_enrolment_on_postgres_gives_unique_gap_free_numbers(pg_url: str, ham_dir: Path) -> None:
    store = StudyStore(pg_url)
    study = load().model_copy(update={"id": "concurrency_check"})
    flow = StudyFlow(study, store)
    codes: list[str] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def enrol() -> None:
        try:
            barrier.wait(timeout=30)
            state = flow.enter_code(flow.consent(flow.start(), True), None)
            codes.append(state.code)  # type: ignore[arg-type]
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=enrol) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    people = store.participants("concurrency_check")
    assert sorted(p["seq"] for p in people) == list(range(8))
    assert {p["code"] for p in people} == set(codes)
    orders = [tuple(p["arm_order"]) for p in sorted(people, key=lambda p: p["seq"])]
    assert orders[0::2] == [orders[0]] * 4 and orders[1::2] == [orders[1]] * 4 and orders[0] != orders[1]


def test_a_nul_character_in_a_text_answer_is_stored_like_on_sqlite(pg_url: str, tmp_path: Path) -> None:
    """PostgreSQL text cannot hold NUL (a paste can carry one); SQLite can. Both must store the same answer."""
    from dermchat.study.store import AnswerRow

    for store in (StudyStore(pg_url), StudyStore(tmp_path / "same.sqlite")):
        store.enrol("nul_check", "NUL-0001", lambda seq: ["a"])
        store.save_answers(
            "nul_check",
            "NUL-0001",
            0,
            [AnswerRow("comments", "text", "fine\x00 thanks", None)],
            case_id=None,
            questionnaire_id="final",
            arm=None,
        )
        assert [a["value"] for a in store.answers("nul_check")] == ["fine thanks"], store.url
