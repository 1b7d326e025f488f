"""What a study records about one turn; the study flow (``dermchat/study/session.py``) is its one writer.

The structured ``TurnResult`` already carries the input hash (never the image), provider ids and versions and
per-step latency; the event adds which arm the participant was under and what that arm actually showed.
"""

from __future__ import annotations

from typing import Any

from dermchat.results import TurnResult
from dermchat.study.definition import Arm, Study
from dermchat.study.store import StudyStore


def turn_tag(study: Study, code: str, step: int, case_id: str, arm: Arm, db_url: str) -> dict[str, Any]:
    """The study information stored with a turn: study, participant, step, case, arm and where it is stored."""
    return {
        "study_id": study.id,
        "participant": code,
        "step": step,
        "case_id": case_id,
        "arm": arm.id,
        "arm_settings": dict(arm.settings),
        "db_url": db_url,
    }


def shown_summary(result: TurnResult) -> dict[str, Any]:
    """What the participant saw, in counts and flags that are easy to analyse without parsing the result."""
    diagnosis = result.diagnosis
    explanation = result.explanation
    top = diagnosis.top(1)[0] if diagnosis and diagnosis.differential else None
    return {
        "status": result.status,
        "audience": result.audience,
        "top_condition": top.condition_id if top else None,
        "top_probability": top.probability if top else None,
        "prediction_set": list(result.prediction_set),
        "triage": result.triage.tier if result.triage else None,
        "references": len(result.references),
        "synthetic_references": sum(1 for ref in result.references if ref.synthetic),
        "citations": len(explanation.citations) if explanation else 0,
        "notices": len(result.notices),
        "total_ms": round(sum(result.timings_ms.values()), 1),
    }


def log_turn(store: StudyStore, tag: dict[str, Any], result: TurnResult) -> int:
    payload = {
        "input_sha256": result.image_sha256,
        "arm_settings": tag.get("arm_settings", {}),
        "shown": shown_summary(result),
        "providers": {
            k: (v.model_dump() if not isinstance(v, list) else [r.model_dump() for r in v])
            for k, v in result.providers.items()
        },
        "timings_ms": dict(result.timings_ms),
        "result": result.model_dump(mode="json"),
    }
    return store.log(
        tag["study_id"], tag["participant"], "turn", payload, step=tag["step"], case_id=tag["case_id"], arm=tag["arm"]
    )
