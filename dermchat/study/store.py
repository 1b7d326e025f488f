"""Where study data lives: SQLite by default (WAL, one commit per event), PostgreSQL for several replicas.

SQLAlchemy Core keeps one code path for both. Every ``log`` call is its own transaction, committed before it
returns, so killing the app loses at most the event being written. What is stored is what the study needs:
participant codes (never names), events and answers. No IP address is ever stored; the user agent only when
the study declares it. Case images are stored only when the study opts in, as metadata-free JPEG.
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.exc import IntegrityError, OperationalError

from dermchat.paths import cache_dir
from dermchat.settings import resolve_env_refs

log = logging.getLogger(__name__)
DATABASE_URL_ENV = "DERMCHAT_STUDY_DATABASE_URL"
STUDY_DIR_ENV = "DERMCHAT_STUDY_DIR"

metadata = sa.MetaData()
participants = sa.Table(
    "participants",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("study_id", sa.String(64), nullable=False),
    sa.Column("code", sa.String(32), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("arm_order", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False, default="active"),
    sa.Column("user_agent", sa.Text, nullable=True),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("updated_at", sa.String(32), nullable=False),
    sa.UniqueConstraint("study_id", "code", name="uq_participant_code"),
    sa.UniqueConstraint("study_id", "seq", name="uq_participant_seq"),
)
events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("study_id", sa.String(64), nullable=False),
    sa.Column("participant_code", sa.String(32), nullable=False),
    sa.Column("type", sa.String(40), nullable=False),
    sa.Column("step", sa.Integer, nullable=True),
    sa.Column("case_id", sa.String(64), nullable=True),
    sa.Column("arm", sa.String(64), nullable=True),
    sa.Column("payload", sa.Text, nullable=False, default="{}"),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Index("ix_events_participant", "study_id", "participant_code"),
)
answers = sa.Table(
    "answers",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("study_id", sa.String(64), nullable=False),
    sa.Column("participant_code", sa.String(32), nullable=False),
    sa.Column("step", sa.Integer, nullable=False),
    sa.Column("case_id", sa.String(64), nullable=True),
    sa.Column("questionnaire_id", sa.String(64), nullable=True),
    sa.Column("arm", sa.String(64), nullable=True),
    sa.Column("question_id", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("value", sa.Text, nullable=True),
    sa.Column("value_numeric", sa.Float, nullable=True),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.UniqueConstraint("study_id", "participant_code", "step", "question_id", name="uq_answer"),
)
images = sa.Table(
    "images",
    metadata,
    sa.Column("study_id", sa.String(64), primary_key=True),
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("jpeg", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.String(32), nullable=False),
)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def to_url(db: str | Path) -> str:
    """A SQLAlchemy URL from either a URL or a plain file path (the CLI's ``--db FILE``)."""
    text = str(db)
    if "://" in text:
        return text
    return f"sqlite:///{Path(text).expanduser().resolve()}"


def default_study_dir() -> Path:
    env = os.environ.get(STUDY_DIR_ENV)
    path = Path(env).expanduser() if env else cache_dir() / "studies"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def _private_database_file(path: Path) -> None:
    """Create the SQLite file readable by this user only (0600) before SQLite opens it.

    SQLite gives its WAL and shared-memory files the mode of the database file, so they are private too; the
    umask default (0644) let every local user read the participants' answers.
    """
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700)
    for target in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if target != path and not target.exists():
            continue  # SQLite makes these itself, with the database file's mode
        fd = os.open(target, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            if os.fstat(fd).st_uid == os.geteuid():
                os.fchmod(fd, 0o600)  # a file of an earlier version, created with the umask's mode
        finally:
            os.close(fd)


def resolve_database_url(study_id: str, configured: Any = None, explicit: str | None = None) -> str:
    """explicit > ``DERMCHAT_STUDY_DATABASE_URL`` > the study's ``database_url`` > ``<study dir>/<id>.sqlite``."""
    for candidate in (explicit, os.environ.get(DATABASE_URL_ENV), resolve_env_refs(configured)):
        if candidate:
            return to_url(str(candidate))
    return to_url(default_study_dir() / f"{study_id}.sqlite")


class ParticipantNotFound(KeyError):
    """A write for a code that is not (or no longer) enrolled, e.g. deleted while the participant's page was open."""


@dataclass(frozen=True)
class ParticipantRecord:
    study_id: str
    code: str
    seq: int
    arm_order: list[str]
    status: str
    created_at: str


@dataclass(frozen=True)
class AnswerRow:
    question_id: str
    kind: str
    value: str | None
    value_numeric: float | None


class StudyStore:
    """All reads and writes of study data; safe to share between threads (one pooled engine)."""

    def __init__(self, url: str | Path) -> None:
        self.url = to_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        if self.is_sqlite:
            path = self.url.split("sqlite:///", 1)[-1]
            if path and path != ":memory:":
                _private_database_file(Path(path))
            self.engine = sa.create_engine(self.url, connect_args={"timeout": 30, "check_same_thread": False})
            sa_event.listen(self.engine, "connect", _sqlite_pragmas)
        else:
            self.engine = sa.create_engine(self.url, pool_pre_ping=True)
        metadata.create_all(self.engine)

    def dispose(self) -> None:
        self.engine.dispose()

    # -- writes (each its own committed transaction) ---------------------------------------------------------
    def enrol(
        self,
        study_id: str,
        code: str,
        arm_order_for: Callable[[int], list[str]],
        *,
        user_agent: str | None = None,
        events_for: Callable[[int], Iterable[tuple[str, dict[str, Any]]]] | None = None,
    ) -> ParticipantRecord:
        """Create a participant with the next enrolment number; raises ``KeyError`` if the code is taken.

        ``events_for(seq)`` gives the first events (consent, schedule), committed in the same transaction as
        the participant, so a crash never leaves a participant without them. The number is read then
        written, so two replicas may race for it: the unique constraint makes one fail and it simply tries
        again with the next number.
        """
        for attempt in range(200):
            try:
                with self.engine.begin() as conn:
                    if conn.execute(
                        sa.select(participants.c.id).where(
                            participants.c.study_id == study_id, participants.c.code == code
                        )
                    ).first():
                        raise KeyError(code)
                    top = conn.execute(
                        sa.select(sa.func.max(participants.c.seq)).where(participants.c.study_id == study_id)
                    ).scalar()
                    seq = 0 if top is None else int(top) + 1
                    order = arm_order_for(seq)
                    stamp = now_iso()
                    conn.execute(
                        participants.insert().values(
                            study_id=study_id,
                            code=code,
                            seq=seq,
                            arm_order=json.dumps(order),
                            status="active",
                            user_agent=_text(user_agent),
                            created_at=stamp,
                            updated_at=stamp,
                        )
                    )
                    for kind, payload in events_for(seq) if events_for else ():
                        conn.execute(
                            events.insert().values(
                                study_id=study_id,
                                participant_code=code,
                                type=kind,
                                payload=_dumps(payload),
                                created_at=now_iso(),
                            )
                        )
                return ParticipantRecord(study_id, code, seq, order, "active", stamp)
            except (IntegrityError, OperationalError) as exc:
                if isinstance(exc, IntegrityError) and self.participant(study_id, code) is not None:
                    raise KeyError(code) from None
                time.sleep(random.uniform(0.001, 0.02) * min(attempt + 1, 10))
        raise RuntimeError("could not enrol a participant: the database stayed busy")

    def log(
        self,
        study_id: str,
        code: str,
        kind: str,
        payload: dict[str, Any] | None = None,
        *,
        step: int | None = None,
        case_id: str | None = None,
        arm: str | None = None,
    ) -> int:
        """Append one event and commit it before returning its id; ``ParticipantNotFound`` for an unknown code."""
        with self.engine.begin() as conn:
            _touch(conn, study_id, code)
            result = _insert_event(
                conn, study_id, code, kind, payload or {}, step=step, case_id=case_id, arm=arm, created_at=now_iso()
            )
            key = result.inserted_primary_key
            if key is None:  # SQLAlchemy gives None only for statements that insert no single row
                raise RuntimeError("the event insert returned no primary key")
            return int(key[0])

    def save_answers(
        self,
        study_id: str,
        code: str,
        step: int,
        rows: list[AnswerRow],
        *,
        case_id: str | None,
        questionnaire_id: str | None,
        arm: str | None,
        completed_event: tuple[str, dict[str, Any]] | None = None,
    ) -> None:
        """Replace the answers of one step and mark it done, atomically (a resubmission overwrites)."""
        stamp = now_iso()
        with self.engine.begin() as conn:
            _touch(conn, study_id, code)
            conn.execute(
                answers.delete().where(
                    answers.c.study_id == study_id, answers.c.participant_code == code, answers.c.step == step
                )
            )
            for row in rows:
                conn.execute(
                    answers.insert().values(
                        study_id=study_id,
                        participant_code=code,
                        step=step,
                        case_id=case_id,
                        questionnaire_id=questionnaire_id,
                        arm=arm,
                        question_id=row.question_id,
                        kind=row.kind,
                        value=_text(row.value),
                        value_numeric=row.value_numeric,
                        created_at=stamp,
                    )
                )
            if completed_event is not None:
                kind, payload = completed_event
                _insert_event(
                    conn, study_id, code, kind, payload, step=step, case_id=case_id, arm=arm, created_at=stamp
                )

    def set_status(self, study_id: str, code: str, status: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                participants.update()
                .where(participants.c.study_id == study_id, participants.c.code == code)
                .values(status=status, updated_at=now_iso())
            )

    def store_image(self, study_id: str, sha256: str, jpeg: bytes) -> None:
        with self.engine.begin() as conn:
            exists = conn.execute(
                sa.select(images.c.sha256).where(images.c.study_id == study_id, images.c.sha256 == sha256)
            ).first()
            if not exists:
                conn.execute(images.insert().values(study_id=study_id, sha256=sha256, jpeg=jpeg, created_at=now_iso()))

    def delete_participant(self, code: str, study_id: str | None = None) -> int:
        """Erase everything recorded under a code (the participant, events, answers); returns rows deleted.

        The participant row goes first: every write locks and checks that row in its own transaction
        (``_touch``), so a write racing with the deletion either lands before it (and is deleted with the
        rest) or finds the code gone and is refused — nothing reappears under a withdrawn code.
        """
        deleted = 0
        with self.engine.begin() as conn:
            for table, column in (
                (participants, participants.c.code),
                (events, events.c.participant_code),
                (answers, answers.c.participant_code),
            ):
                stmt = table.delete().where(column == code)
                if study_id is not None:
                    stmt = stmt.where(table.c.study_id == study_id)
                deleted += conn.execute(stmt).rowcount or 0
        if self.is_sqlite and deleted:
            self._flush_wal()
        return deleted

    def _flush_wal(self) -> None:
        """Copy the WAL into the database and empty it: its older page versions still hold deleted rows.

        With ``secure_delete`` the database pages themselves are zeroed, so after this the files no longer
        contain what was erased (a copy of the file handed on later cannot leak a withdrawn participant).
        """
        with self.engine.connect() as conn:
            busy = conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").first()
        if busy is not None and busy[0]:
            log.warning("the study database was busy: deleted rows stay in its WAL file until the next checkpoint")

    # -- reads ---------------------------------------------------------------------------------------------------
    def participant(self, study_id: str, code: str) -> ParticipantRecord | None:
        with self.engine.connect() as conn:
            row = (
                conn.execute(
                    sa.select(participants).where(participants.c.study_id == study_id, participants.c.code == code)
                )
                .mappings()
                .first()
            )
        return _participant(row) if row else None

    def _rows(
        self,
        table: sa.Table,
        order_by: list[Any],
        *,
        study_id: str | None,
        code: str | None = None,
        code_column: str | None = None,
        json_column: str | None = None,
    ) -> list[dict[str, Any]]:
        """Rows of ``table`` filtered by study (and participant code), with one JSON column decoded."""
        stmt = sa.select(table).order_by(*order_by)
        if study_id is not None:
            stmt = stmt.where(table.c.study_id == study_id)
        if code is not None and code_column is not None:
            stmt = stmt.where(table.c[code_column] == code)
        with self.engine.connect() as conn:
            rows = [dict(row) for row in conn.execute(stmt).mappings()]
        if json_column is not None:
            for row in rows:
                row[json_column] = json.loads(row[json_column])
        return rows

    def participants(self, study_id: str | None = None) -> list[dict[str, Any]]:
        return self._rows(
            participants, [participants.c.study_id, participants.c.seq], study_id=study_id, json_column="arm_order"
        )

    def events(self, study_id: str | None = None, code: str | None = None) -> list[dict[str, Any]]:
        return self._rows(
            events, [events.c.id], study_id=study_id, code=code, code_column="participant_code", json_column="payload"
        )

    def events_of_type(self, study_id: str, kind: str) -> list[dict[str, Any]]:
        """Events of one type in a study (payload decoded), without loading the large turn events."""
        stmt = sa.select(events).where(events.c.study_id == study_id, events.c.type == kind).order_by(events.c.id)
        with self.engine.connect() as conn:
            rows = [dict(row) for row in conn.execute(stmt).mappings()]
        for row in rows:
            row["payload"] = json.loads(row["payload"])
        return rows

    def answers(self, study_id: str | None = None, code: str | None = None) -> list[dict[str, Any]]:
        order = [answers.c.study_id, answers.c.participant_code, answers.c.step, answers.c.id]
        return self._rows(answers, order, study_id=study_id, code=code, code_column="participant_code")

    def completed_steps(self, study_id: str, code: str) -> set[int]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(events.c.step).where(
                    events.c.study_id == study_id,
                    events.c.participant_code == code,
                    events.c.type == "step_completed",
                )
            ).scalars()
            return {int(step) for step in rows if step is not None}

    def last_event(self, study_id: str, code: str, kind: str, step: int | None) -> dict[str, Any] | None:
        """The latest event of ``kind`` at ``step`` (``None``: events not tied to a step, such as 'started')."""
        stmt = (
            sa.select(events)
            .where(
                events.c.study_id == study_id,
                events.c.participant_code == code,
                events.c.type == kind,
                events.c.step == step,
            )
            .order_by(events.c.id.desc())
            .limit(1)
        )
        with self.engine.connect() as conn:
            row = conn.execute(stmt).mappings().first()
        if row is None:
            return None
        out = dict(row)
        out["payload"] = json.loads(out["payload"])
        return out

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return {
                table.name: int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar() or 0)
                for table in (participants, events, answers, images)
            }


def _insert_event(
    conn: sa.Connection,
    study_id: str,
    code: str,
    kind: str,
    payload: dict[str, Any],
    *,
    step: int | None,
    case_id: str | None,
    arm: str | None,
    created_at: str,
) -> sa.CursorResult[Any]:
    """One row of the event log about a step: what ``log`` appends and what ``save_answers`` marks done with."""
    return conn.execute(
        events.insert().values(
            study_id=study_id,
            participant_code=code,
            type=kind,
            step=step,
            case_id=case_id,
            arm=arm,
            payload=_dumps(payload),
            created_at=created_at,
        )
    )


def _touch(conn: sa.Connection, study_id: str, code: str) -> None:
    """Stamp the participant as active now, or raise ``ParticipantNotFound`` (rolling the transaction back)."""
    touched = conn.execute(
        participants.update()
        .where(participants.c.study_id == study_id, participants.c.code == code)
        .values(updated_at=now_iso())
    ).rowcount
    if not touched:
        raise ParticipantNotFound(code)


def _participant(row: Any) -> ParticipantRecord:
    return ParticipantRecord(
        study_id=row["study_id"],
        code=row["code"],
        seq=int(row["seq"]),
        arm_order=json.loads(row["arm_order"]),
        status=row["status"],
        created_at=row["created_at"],
    )


def _text(value: str | None) -> str | None:
    """PostgreSQL text cannot hold NUL characters (SQLite can): drop them so both backends store the same."""
    return value.replace("\x00", "") if value else value


def _dumps(payload: dict[str, Any]) -> str:
    return json.dumps(payload, default=str, ensure_ascii=False, sort_keys=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """WAL lets readers (the researcher page) run beside the writer; FULL sync makes a commit durable;
    ``secure_delete`` zeroes deleted rows in the file, so deleting a participant really erases their data."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


_stores: dict[str, StudyStore] = {}
_stores_lock = threading.Lock()


def get_store(url: str | Path) -> StudyStore:
    """One store (one connection pool) per database per process."""
    key = to_url(url)
    with _stores_lock:
        if key not in _stores:
            _stores[key] = StudyStore(key)
        return _stores[key]
