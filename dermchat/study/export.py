"""Tidy export of a study database: CSVs for analysis (one row per participant × case × question) + JSONL.

Everything is read from the database alone (the ``started`` event records each participant's schedule and the
cases' ground truth), so an export made months later does not depend on the study file still matching.
CSV cells that a spreadsheet would run as a formula are quoted (``dermchat.csv_safety.formula_safe``).
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from dermchat.csv_safety import formula_safe
from dermchat.feedback.export import csv_text
from dermchat.study.store import StudyStore, get_store

CASE_COLUMNS = [
    "study_id",
    "participant",
    "seq",
    "step",
    "case_position",
    "case_id",
    "arm",
    "block",
    "ground_truth",
    "question_id",
    "kind",
    "value",
    "value_numeric",
    "answered_at",
    "shown_at",
    "response_ms",
]
QUESTIONNAIRE_COLUMNS = [
    "study_id",
    "participant",
    "seq",
    "step",
    "questionnaire_id",
    "arm",
    "block",
    "question_id",
    "kind",
    "value",
    "value_numeric",
    "answered_at",
]
PARTICIPANT_COLUMNS = [
    "study_id",
    "participant",
    "seq",
    "arm_order",
    "status",
    "steps_done",
    "steps_total",
    "user_agent",
    "created_at",
    "updated_at",
]
TURN_COLUMNS = [
    "study_id",
    "participant",
    "step",
    "case_id",
    "arm",
    "input_sha256",
    "status",
    "audience",
    "top_condition",
    "top_probability",
    "prediction_set",
    "triage",
    "references",
    "synthetic_references",
    "citations",
    "reference_clicks",
    "citation_clicks",
    "total_ms",
    "timings_ms",
    "providers",
    "created_at",
]

FEEDBACK_COLUMNS = [
    "study_id",
    "participant",
    "step",
    "case_id",
    "arm",
    "result_id",
    "providers",
    "tier",
    "rating",
    "comment",
    "created_at",
]


def _schedules(events: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """(study, participant) -> the 'started' payload (steps, arm order, ground truth)."""
    return {(e["study_id"], e["participant_code"]): e["payload"] for e in events if e["type"] == "started"}


def _shown_at(displays: list[str], answered_at: str) -> str:
    """The last time the case's answer was displayed (first run or a replay after a resume) before answering."""
    return max((at for at in displays if at <= answered_at), default="")


def _response_ms(shown_at: str, answered_at: str) -> float | str:
    if not shown_at:
        return ""
    spent = datetime.fromisoformat(answered_at) - datetime.fromisoformat(shown_at)
    return round(spent.total_seconds() * 1000, 1)


def tables(store: StudyStore, study_id: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """The export as rows per file name, before writing (the researcher page shows parts of it)."""
    events = store.events(study_id)
    people = store.participants(study_id)
    schedules = _schedules(events)
    seen = EventIndex.of(events)
    seq_of = {(p["study_id"], p["code"]): p["seq"] for p in people}
    case_rows, questionnaire_rows = _answer_rows(store.answers(study_id), schedules, seq_of, seen)
    return {
        "participants.csv": _participant_rows(people, schedules, seen),
        "case_answers.csv": case_rows,
        "questionnaire_answers.csv": questionnaire_rows,
        "turns.csv": _turn_rows(events, seen),
        "feedback.csv": _feedback_rows(events),
        "events.jsonl": events,
    }


Participant = tuple[str, str]
"""(study id, participant code)."""
TURN_FIELDS = (
    "status",
    "audience",
    "top_condition",
    "top_probability",
    "triage",
    "references",
    "synthetic_references",
    "citations",
    "total_ms",
)
"""What the participant was shown in a turn (the ``shown`` part of a ``turn`` event), copied to turns.csv."""
FEEDBACK_FIELDS = ("result_id", "providers", "tier", "rating", "comment")


@dataclass
class EventIndex:
    """What the event log says per participant: when each step's answer was displayed, which steps were completed,
    and how many reference and citation clicks each step had."""

    displays: dict[tuple[str, str, int], list[str]] = field(default_factory=dict)
    done: dict[Participant, set[int]] = field(default_factory=dict)
    clicks: dict[tuple[str, str, int, str], int] = field(default_factory=dict)

    @classmethod
    def of(cls, events: list[dict[str, Any]]) -> EventIndex:
        index = cls()
        for e in events:
            key = (e["study_id"], e["participant_code"])
            if e["type"] in {"turn", "turn_replayed"}:
                index.displays.setdefault((*key, e["step"]), []).append(e["created_at"])
            if e["type"] == "step_completed":
                index.done.setdefault(key, set()).add(e["step"])
            if e["type"] in {"reference_click", "citation_click"}:
                ckey = (*key, e["step"], e["type"])
                index.clicks[ckey] = index.clicks.get(ckey, 0) + 1
        return index


def _answer_rows(
    answers: list[dict[str, Any]],
    schedules: dict[Participant, dict[str, Any]],
    seq_of: dict[Participant, Any],
    seen: EventIndex,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Answers about a case (with its position, ground truth and response time) and questionnaire answers."""
    case_rows: list[dict[str, Any]] = []
    questionnaire_rows: list[dict[str, Any]] = []
    for a in answers:
        key = (a["study_id"], a["participant_code"])
        schedule = schedules.get(key, {})
        steps = schedule.get("steps", [])
        step = steps[a["step"]] if a["step"] < len(steps) else {}
        common = {
            "study_id": a["study_id"],
            "participant": a["participant_code"],
            "seq": seq_of.get(key),
            "step": a["step"],
            "arm": a["arm"] or "",
            "block": step.get("block"),
            "question_id": a["question_id"],
            "kind": a["kind"],
            "value": a["value"] if a["value"] is not None else "",
            "value_numeric": a["value_numeric"] if a["value_numeric"] is not None else "",
            "answered_at": a["created_at"],
        }
        if not a["case_id"]:
            questionnaire_rows.append({**common, "questionnaire_id": a["questionnaire_id"]})
            continue
        case_steps = [i for i, s in enumerate(steps) if s.get("kind") == "case"]
        shown_at = _shown_at(seen.displays.get((*key, a["step"]), []), a["created_at"])
        case_rows.append(
            {
                **common,
                "case_id": a["case_id"],
                "case_position": case_steps.index(a["step"]) + 1 if a["step"] in case_steps else "",
                "ground_truth": schedule.get("ground_truth", {}).get(a["case_id"]) or "",
                "shown_at": shown_at,
                "response_ms": _response_ms(shown_at, a["created_at"]),
            }
        )
    return case_rows, questionnaire_rows


def _participant_rows(
    people: list[dict[str, Any]], schedules: dict[Participant, dict[str, Any]], seen: EventIndex
) -> list[dict[str, Any]]:
    return [
        {
            "study_id": p["study_id"],
            "participant": p["code"],
            "seq": p["seq"],
            "arm_order": "|".join(p["arm_order"]),
            "status": p["status"],
            "steps_done": len(seen.done.get((p["study_id"], p["code"]), set())),
            "steps_total": len(schedules.get((p["study_id"], p["code"]), {}).get("steps", [])),
            "user_agent": p.get("user_agent") or "",
            "created_at": p["created_at"],
            "updated_at": p["updated_at"],
        }
        for p in people
    ]


def _turn_rows(events: list[dict[str, Any]], seen: EventIndex) -> list[dict[str, Any]]:
    """One row per answer shown: what was on screen, how it was clicked, how long each step took."""
    rows: list[dict[str, Any]] = []
    for e in events:
        if e["type"] != "turn":
            continue
        shown = e["payload"].get("shown", {})
        turn_key = (e["study_id"], e["participant_code"], e["step"])
        rows.append(
            {
                "study_id": e["study_id"],
                "participant": e["participant_code"],
                "step": e["step"],
                "case_id": e["case_id"],
                "arm": e["arm"],
                "input_sha256": e["payload"].get("input_sha256") or "",
                **{k: shown.get(k, "") for k in TURN_FIELDS},
                "prediction_set": "|".join(shown.get("prediction_set", [])),
                "reference_clicks": seen.clicks.get((*turn_key, "reference_click"), 0),
                "citation_clicks": seen.clicks.get((*turn_key, "citation_click"), 0),
                "timings_ms": json.dumps(e["payload"].get("timings_ms", {}), sort_keys=True),
                "providers": json.dumps(e["payload"].get("providers", {}), sort_keys=True),
                "created_at": e["created_at"],
            }
        )
    return rows


def _feedback_rows(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "study_id": e["study_id"],
            "participant": e["participant_code"],
            "step": e["step"],
            "case_id": e["case_id"],
            "arm": e["arm"],
            **{k: e["payload"].get(k, "") for k in FEEDBACK_FIELDS},
            "created_at": e["created_at"],
        }
        for e in events
        if e["type"] == "feedback"
    ]


COLUMNS = {
    "participants.csv": PARTICIPANT_COLUMNS,
    "case_answers.csv": CASE_COLUMNS,
    "questionnaire_answers.csv": QUESTIONNAIRE_COLUMNS,
    "turns.csv": TURN_COLUMNS,
    "feedback.csv": FEEDBACK_COLUMNS,
}


def _render(name: str, rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    if name.endswith(".jsonl"):
        for row in rows:
            buf.write(json.dumps(row, ensure_ascii=False, sort_keys=True, default=str) + "\n")
        return buf.getvalue()
    if name == "feedback.csv":  # free text typed by participants: formula-safe
        return csv_text(rows, COLUMNS[name])
    writer = csv.DictWriter(buf, fieldnames=COLUMNS[name], lineterminator="\n")
    writer.writeheader()
    writer.writerows({key: formula_safe(value) for key, value in row.items()} for row in rows)
    return buf.getvalue()


def export(db_url: str | Path, out_dir: str | Path, study_id: str | None = None) -> dict[str, Path]:
    """Write the CSVs and ``events.jsonl`` into ``out_dir``; returns the written paths by file name."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for name, rows in tables(get_store(db_url), study_id).items():
        path = out / name
        path.write_text(_render(name, rows), encoding="utf-8")
        written[name] = path
    return written


def export_zip(db_url: str | Path, zip_path: str | Path | BinaryIO, study_id: str | None = None) -> Path | BinaryIO:
    """The same files in one zip, written to a path or to an open binary file (the researcher page builds it
    in memory, so no copy of the study data is left on the server)."""
    target: Path | BinaryIO = Path(zip_path) if isinstance(zip_path, str | Path) else zip_path
    if isinstance(target, Path):
        target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, rows in tables(get_store(db_url), study_id).items():
            zf.writestr(name, _render(name, rows))
    return target
