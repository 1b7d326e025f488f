"""The participant flow as a state machine, independent of any UI: consent -> code -> steps -> done.

The UI keeps one small, copyable ``ParticipantState`` per browser session; everything that matters is in the
store, and progress is *derived* from it (which steps have a ``step_completed`` event), so a refresh, a lost
connection or a crashed server resumes at the first unfinished step when the participant enters their code.
Declining consent writes nothing at all: the participant row and the consent event are created together,
only once a code is chosen after consenting.

Codes are the only key to a participant's session, so a typed code never resumes someone else's: generated
codes have 12 random characters (about 59 bits); a code the participant typed to start (only when the study
sets ``allow_entered_codes``) can be short and guessable, so it never resumes by itself: that participant is
shown a generated resume key once, and only the key resumes. Failed code entries count towards a global
backoff (``code_backoff``), shared by everyone since no IP address is ever recorded.
"""

from __future__ import annotations

import hashlib
import math
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from dermchat.ratelimit import Backoff
from dermchat.request import TurnRequest
from dermchat.results import StepEvent, TurnResult
from dermchat.study.assignment import Step, assign
from dermchat.study.definition import ChoiceItem, Item, LikertItem, Study, TextItem
from dermchat.study.store import AnswerRow, ParticipantNotFound, StudyStore, get_store, now_iso
from dermchat.study.turnlog import log_turn, turn_tag
from dermchat.vocabulary import get_vocabulary

if TYPE_CHECKING:
    from dermchat.engine import DermChat

Stage = Literal["consent", "code", "case", "questionnaire", "done", "declined"]
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L: codes are read aloud and typed
CODE_PATTERN = re.compile(r"^[A-Z0-9][A-Z0-9-]{2,22}[A-Z0-9]$")
WITHDRAWN = (
    "The data recorded under this participant code has been deleted, so nothing more can be recorded "
    "under it. Thank you for your time; please contact the researcher if this is unexpected."
)
CHANGED = "This code belongs to an earlier version of the study; please contact the researcher."
TAKEN = (
    "This code is already in use. If it is yours, enter the key to continue that you were shown when you "
    "started; otherwise leave the field empty to get a new code."
)
GENERATED_ONLY = "This study only accepts codes it generated. Leave the field empty to get a new code."
CODE_GROUPS = 3  # XXXX-XXXX-XXXX: 12 random characters
MIN_RESUMABLE = 10  # characters (hyphens aside) a code of an earlier version needs to resume by itself


class FlowError(ValueError):
    """Something the participant must fix (a bad code, a missing answer); ``messages`` lists each problem."""

    def __init__(self, messages: list[str]) -> None:
        self.messages = messages
        super().__init__(" ".join(messages))


@dataclass(frozen=True)
class ParticipantState:
    """Per-browser-session state: small, immutable, deep-copyable (what ``gr.State`` holds)."""

    study_id: str
    stage: Stage = "consent"
    code: str | None = None
    consented_at: str | None = None
    step: int | None = None
    steps: tuple[Step, ...] = field(default_factory=tuple)
    resume_key: str | None = None  # shown once, after starting with a typed code: the only way back in

    @property
    def current(self) -> Step | None:
        return self.steps[self.step] if self.step is not None and self.step < len(self.steps) else None


@dataclass(frozen=True)
class CaseView:
    case_id: str
    arm: str
    image_path: Path
    position: int  # 1-based among case steps
    total: int
    question: str


def generate_code() -> str:
    """Twelve random characters as XXXX-XXXX-XXXX with at least one digit (names never contain digits).

    About 59 bits: a code is the key to a participant's session, so it must not be guessable.
    """
    while True:
        raw = "".join(secrets.choice(CODE_ALPHABET) for _ in range(4 * CODE_GROUPS))
        if any(ch.isdigit() for ch in raw):
            return "-".join(raw[i : i + 4] for i in range(0, len(raw), 4))


def _key_digest(study_id: str, key: str) -> str:
    return hashlib.sha256(f"{study_id}:{key}".encode()).hexdigest()


def normalise_code(code: str) -> str:
    """Upper-case and check the shape; a code must contain a digit so that a name cannot pass as one."""
    cleaned = re.sub(r"\s+", "", code or "").upper()
    if not CODE_PATTERN.match(cleaned) or not any(ch.isdigit() for ch in cleaned):
        raise FlowError(
            [
                "A participant code is 4-24 letters and digits (at least one digit), for example K7PQ-4XRM. "
                "Please do not enter your name."
            ]
        )
    return cleaned


class StudyFlow:
    """One study's participant flow against one store; shared by every participant (holds no per-user state)."""

    def __init__(self, study: Study, store: StudyStore | str) -> None:
        self.study = study
        self._store = store
        self.code_backoff = Backoff(threshold=10, base_s=30.0, max_s=900.0)  # failed typed codes, all sessions

    @property
    def store(self) -> StudyStore:
        """Opened on first use, so mounting a page for every study creates no database until someone consents."""
        if isinstance(self._store, str):
            self._store = get_store(self._store)
        return self._store

    # -- consent and code --------------------------------------------------------------------------------------
    def start(self) -> ParticipantState:
        return ParticipantState(study_id=self.study.id)

    def consent(self, state: ParticipantState, agreed: bool) -> ParticipantState:
        """Record nothing here: a declined consent leaves no trace, an accepted one is written with the code."""
        self._expect(state, "consent")
        if not agreed:
            return replace(state, stage="declined")
        return replace(state, stage="code", consented_at=now_iso())

    def enter_code(
        self, state: ParticipantState, code: str | None = None, *, user_agent: str | None = None
    ) -> ParticipantState:
        """Start (new code) or resume (a generated code, or the resume key of a typed one). ``code=None``
        generates one. A typed code never resumes a session it did not generate (``TAKEN``)."""
        self._expect(state, "code")
        if code is None or not code.strip():
            return self._enrol(state, None, user_agent)
        typed = normalise_code(code)
        wait = self.code_backoff.remaining()
        if wait > 0:
            raise FlowError([f"Too many codes were tried. Please wait {math.ceil(wait)} seconds and try again."])
        if self.store.participant(self.study.id, typed) is not None and self._resumable_by_code(typed):
            return self._resume(state, typed)
        owner = self._owner_of_key(typed)
        if owner is not None:
            return self._resume(state, owner)
        if self.store.participant(self.study.id, typed) is not None or not self.study.allow_entered_codes:
            self.code_backoff.fail()
            raise FlowError([TAKEN if self.study.allow_entered_codes else GENERATED_ONLY])
        return self._enrol(state, typed, user_agent)

    def _resumable_by_code(self, code: str) -> bool:
        """Generated codes resume; so do long codes of earlier versions that were given no resume key."""
        recorded = self.store.last_event(self.study.id, code, "code", None)
        payload = recorded["payload"] if recorded else {}
        if payload.get("generated"):
            return True
        return "resume_key_sha256" not in payload and len(code.replace("-", "")) >= MIN_RESUMABLE

    def _owner_of_key(self, key: str) -> str | None:
        digest = _key_digest(self.study.id, key)
        for event in self.store.events_of_type(self.study.id, "code"):
            if event["payload"].get("resume_key_sha256") == digest:
                return str(event["participant_code"])
        return None

    def _enrol(self, state: ParticipantState, typed: str | None, user_agent: str | None) -> ParticipantState:
        """A new participant under ``typed`` (who is given a resume key), or under a generated code."""
        generated = typed is None
        resume_key = None if generated else generate_code()
        code_payload: dict[str, Any] = {"generated": generated}
        if resume_key is not None:
            code_payload["resume_key_sha256"] = _key_digest(self.study.id, resume_key)
        for _ in range(20):
            chosen = generate_code() if generated else typed
            assert chosen is not None
            if self.store.participant(self.study.id, chosen) is not None:
                if generated:
                    continue  # astronomically rare collision: draw again
                raise FlowError([TAKEN])
            try:
                record = self.store.enrol(
                    self.study.id,
                    chosen,
                    lambda seq: assign(self.study, seq).arm_order,
                    user_agent=user_agent if self.study.privacy.record_user_agent else None,
                    events_for=lambda seq: [
                        ("consent", self._consent_payload(state)),
                        ("code", code_payload),
                        ("started", self._schedule_payload(seq)),
                    ],
                )
            except KeyError:
                if generated:
                    continue
                raise FlowError([TAKEN]) from None  # someone enrolled this code a moment ago
            steps = tuple(assign(self.study, record.seq).steps)
            return self._at_next_step(replace(state, code=chosen, steps=steps, resume_key=resume_key))
        raise RuntimeError("could not allocate a participant code")

    def _consent_payload(self, state: ParticipantState) -> dict[str, Any]:
        digest = hashlib.sha256(self.study.consent.encode("utf-8")).hexdigest()
        return {"consented_at": state.consented_at, "consent_sha256": digest, "study_title": self.study.title}

    def _schedule_payload(self, seq: int) -> dict[str, Any]:
        """The participant's schedule and the cases' ground truth: the export needs nothing but the database."""
        assignment = assign(self.study, seq)
        return {
            "seq": seq,
            "arm_order": assignment.arm_order,
            "steps": [s.as_dict() for s in assignment.steps],
            "ground_truth": {case.id: self.study.ground_truth_id(case) for case in self.study.cases.items},
        }

    def _resume(self, state: ParticipantState, code: str) -> ParticipantState:
        record = self.store.participant(self.study.id, code)
        assert record is not None
        assignment = assign(self.study, record.seq)
        steps = tuple(assignment.steps)
        if record.arm_order != assignment.arm_order or not self._same_schedule(code, steps):
            raise FlowError([CHANGED])
        with self._writing():
            self.store.log(self.study.id, code, "resumed", {"consented_at": state.consented_at})
        return self._at_next_step(replace(state, code=code, steps=steps, resume_key=None))

    def _same_schedule(self, code: str, steps: tuple[Step, ...]) -> bool:
        """Whether the study still gives this participant the steps recorded when they enrolled.

        Completed steps are stored by number: if cases or questionnaires were added, removed or reordered
        since, the numbers point at other screens, so resuming would show a case twice, skip one, and file
        answers under the wrong case in the export (which reads the recorded schedule).
        """
        started = self.store.last_event(self.study.id, code, "started", None)
        recorded = started["payload"].get("steps") if started else None
        return recorded is None or recorded == [s.as_dict() for s in steps]

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """Writes for a code deleted meanwhile (withdrawal while the page was open) become a message."""
        try:
            yield
        except ParticipantNotFound:
            raise FlowError([WITHDRAWN]) from None

    # -- steps ---------------------------------------------------------------------------------------------------
    def _at_next_step(self, state: ParticipantState) -> ParticipantState:
        assert state.code is not None
        done = self.store.completed_steps(self.study.id, state.code)
        for index, step in enumerate(state.steps):
            if index not in done:
                return replace(state, stage="case" if step.kind == "case" else "questionnaire", step=index)
        record = self.store.participant(self.study.id, state.code)
        if record is not None and record.status != "done":
            with self._writing():
                self.store.log(self.study.id, state.code, "finished", {"steps": len(state.steps)})
            self.store.set_status(self.study.id, state.code, "done")
        return replace(state, stage="done", step=None)

    def case_view(self, state: ParticipantState) -> CaseView:
        self._expect(state, "case")
        step = state.current
        assert step is not None and step.arm is not None
        case = self.study.case(step.ref)
        case_steps = [s for s in state.steps if s.kind == "case"]
        return CaseView(
            case_id=case.id,
            arm=step.arm,
            image_path=self.study.image_path(case),
            position=case_steps.index(step) + 1,
            total=len(case_steps),
            question=case.question,
        )

    def shown_turn(self, state: ParticipantState) -> TurnResult | None:
        """The turn already shown for the current case (after a resume it is replayed, not re-run)."""
        if state.code is None or state.step is None:
            return None
        logged = self.store.last_event(self.study.id, state.code, "turn", state.step)
        return TurnResult.model_validate(logged["payload"]["result"]) if logged else None

    def run_case(self, state: ParticipantState, app: DermChat) -> Iterator[StepEvent]:
        """Run the real pipeline on the current case under its arm; the last event carries the result."""
        view = self.case_view(state)
        assert state.code is not None and state.step is not None
        previous = self.shown_turn(state)
        if previous is not None:
            if self._first_display_since_resume(state.code, state.step):
                # Logged so that the export times the answer from this display, not from before the break.
                with self._writing():
                    self.store.log(
                        self.study.id,
                        state.code,
                        "turn_replayed",
                        {"turn_id": previous.turn_id},
                        step=state.step,
                        case_id=view.case_id,
                        arm=view.arm,
                    )
            yield StepEvent(
                step="turn", kind="result", message=previous.message, result=previous, data={"replayed": True}
            )
            return
        if self.store.participant(self.study.id, state.code) is None:
            raise FlowError([WITHDRAWN])  # before spending a pipeline run on a turn that cannot be stored
        arm = self.study.arm(view.arm)
        tag = turn_tag(self.study, state.code, state.step, view.case_id, arm, self.store.url)
        request = TurnRequest(
            image=str(view.image_path),
            question=view.question,
            settings_overrides=arm.settings or None,
            turn_id=f"{self.study.id}-{state.code}-{state.step}",
        )
        result: TurnResult | None = None
        for event in app.run_turn(request):
            if event.kind == "result":
                result = event.result
            yield event
        assert result is not None
        # The flow is the one writer of study turns: it knows the turn is a study's, holds the store, and a write
        # that fails (the database is down, the code was deleted meanwhile) reaches the participant.
        with self._writing():
            log_turn(self.store, tag, result)
        if self.study.privacy.store_images and result.image_sha256:
            from dermchat.intake import decode_image, to_jpeg_bytes

            self.store.store_image(
                self.study.id, result.image_sha256, to_jpeg_bytes(decode_image(view.image_path).image)
            )

    def _first_display_since_resume(self, code: str, step: int) -> bool:
        """Whether a replay shows the answer again after a break (the page also re-renders it after, e.g., a
        rejected submission; that is not a new display and must not restart the response-time clock)."""
        resumed = self.store.last_event(self.study.id, code, "resumed", None)
        if resumed is None:
            return False
        displays = [self.store.last_event(self.study.id, code, kind, step) for kind in ("turn", "turn_replayed")]
        return all(d is None or d["created_at"] < resumed["created_at"] for d in displays)

    def click(
        self, state: ParticipantState, target: Literal["reference", "citation"], index: int, detail: dict[str, Any]
    ) -> None:
        """Log a click on a reference image or a cited source of the current case's answer."""
        self._expect(state, "case")
        step = state.current
        assert state.code is not None and step is not None
        with self._writing():
            self.store.log(
                self.study.id,
                state.code,
                f"{target}_click",
                {"index": index, **detail},
                step=state.step,
                case_id=step.ref,
                arm=step.arm,
            )

    def feedback(self, state: ParticipantState, rating: str, comment: str | None = None) -> None:
        """Log the participant's rating of the current case's answer (thumbs up / down, or flagged as wrong or
        unsafe) with an optional comment, into the study database: feedback given inside a study belongs to it."""
        from dermchat.feedback.record import FeedbackError, check_rating, clean_comment, feedback_fields

        self._expect(state, "case")
        step = state.current
        assert state.code is not None and step is not None
        shown = self.shown_turn(state)
        if shown is None:
            raise FlowError(["Please wait for DermChat's answer before rating it."])
        try:
            payload = {**feedback_fields(shown), "rating": check_rating(rating), "comment": clean_comment(comment)}
        except FeedbackError as exc:
            raise FlowError([str(exc)]) from None
        with self._writing():
            self.store.log(
                self.study.id, state.code, "feedback", payload, step=state.step, case_id=step.ref, arm=step.arm
            )

    def items(self, state: ParticipantState) -> list[Item]:
        step = state.current
        if step is None:
            return []
        return (
            list(self.study.case_questions) if step.kind == "case" else list(self.study.questionnaire(step.ref).items)
        )

    def submit(self, state: ParticipantState, values: dict[str, Any]) -> ParticipantState:
        """Validate and save the answers of the current step, mark it done and move on."""
        if state.stage not in {"case", "questionnaire"}:
            raise FlowError([f"nothing to answer at this point ({state.stage})"])
        step = state.current
        assert state.code is not None and state.step is not None and step is not None
        if step.kind == "case" and self.shown_turn(state) is None:
            if self.store.participant(self.study.id, state.code) is None:
                raise FlowError([WITHDRAWN])
            raise FlowError(["Please wait for DermChat's answer to this case before moving on."])
        ground_truth = self.study.ground_truth_id(self.study.case(step.ref)) if step.kind == "case" else None
        rows, problems = [], []
        for item in self.items(state):
            try:
                row = validate_answer(item, values.get(item.id), ground_truth)
            except FlowError as exc:
                problems.extend(exc.messages)
                continue
            rows.append(row)
        if problems:
            raise FlowError(problems)
        with self._writing():
            self.store.save_answers(
                self.study.id,
                state.code,
                state.step,
                rows,
                case_id=step.ref if step.kind == "case" else None,
                questionnaire_id=step.ref if step.kind == "questionnaire" else None,
                arm=step.arm,
                completed_event=("step_completed", {"kind": step.kind, "ref": step.ref, "block": step.block}),
            )
        return self._at_next_step(replace(state, resume_key=None))  # the key was shown once, with the first step

    def _expect(self, state: ParticipantState, stage: Stage) -> None:
        if state.study_id != self.study.id:
            raise FlowError([f"this page belongs to study {state.study_id!r}, not {self.study.id!r}"])
        if state.stage != stage:
            raise FlowError([f"expected the {stage} step, but the participant is at {state.stage}"])


def validate_answer(item: Item, raw: Any, ground_truth: str | None = None) -> AnswerRow:
    """One answer as a stored row (an optional item left empty is stored as skipped); ``FlowError`` if invalid."""
    empty = raw is None or (isinstance(raw, str) and not raw.strip())
    if empty:
        if item.required:
            raise FlowError([f"Please answer: {item.text}"])
        return AnswerRow(item.id, item.kind, None, None)
    if isinstance(item, LikertItem):
        try:
            value = int(str(raw).split("–")[0].strip()) if not isinstance(raw, (int, float)) else int(raw)
        except ValueError:
            raise FlowError([f"{item.text}: choose a number from 1 to {item.scale}"]) from None
        if not 1 <= value <= item.scale or (isinstance(raw, float) and raw != value):
            raise FlowError([f"{item.text}: choose a number from 1 to {item.scale}"])
        return AnswerRow(item.id, item.kind, str(value), float(value))
    if isinstance(item, ChoiceItem):
        text = str(raw)
        if text not in item.options():
            raise FlowError([f"{item.text}: {text!r} is not one of the options"])
        numeric = None
        if item.scored and ground_truth:
            numeric = 1.0 if get_vocabulary().resolve(text) == ground_truth else 0.0
        return AnswerRow(item.id, item.kind, text, numeric)
    assert isinstance(item, TextItem)
    text = str(raw).strip()
    if len(text) > item.max_chars:
        raise FlowError([f"{item.text}: please keep it under {item.max_chars} characters"])
    return AnswerRow(item.id, item.kind, text, None)
