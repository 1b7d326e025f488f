"""The quality step: is this a usable photo of skin? A poor photo stops the turn unless the user insists."""

from __future__ import annotations

from collections.abc import Generator

from dermchat.providers import QualityChecker
from dermchat.results import QualityReport, StepEvent
from dermchat.steps.turn import Turn


def check_quality(turn: Turn) -> Generator[StepEvent, None, bool]:
    """Returns whether the turn goes on to diagnosis."""
    provider, why_not = turn.provider_or_notice(
        QualityChecker, turn.settings.quality, "Photo quality was not checked ({why})."
    )
    if provider is None:
        if why_not:
            yield StepEvent(step="quality", kind="skipped", message=why_not)
        return True
    yield turn.start("quality", provider)
    outcome = yield from turn.call("quality", provider, lambda: provider.check(turn.ctx))
    if outcome.error is not None:
        yield turn.fail("quality", provider.id, outcome.error, "The photo quality check failed; continuing without it.")
        turn.result.notices.append("Photo quality could not be checked this time.")
        return True
    report = outcome.value
    assert report is not None
    turn.note_provider(provider)
    turn.result.quality = report
    yield turn.done(
        "quality",
        provider,
        outcome,
        f"Photo quality {report.score:.0f}/100 ({report.band})",
        {"quality": report.model_dump()},
    )
    return _passes_gate(turn, report)


def _passes_gate(turn: Turn, report: QualityReport) -> bool:
    """Not skin ends the turn; a photo below the bar asks for a retake unless forced (or the gate is off)."""
    result = turn.result
    if not report.is_skin:
        result.status = "not_skin"
        result.message = (
            "This photo doesn't seem to show skin, so I can't look at it. Please send a close, "
            "well-lit photo of the skin area you're worried about."
        )
        return False
    if not report.acceptable and turn.settings.quality_gate:
        if not turn.request.force:
            tips = [r.patient_tip for r in report.problems(2) if r.patient_tip]
            result.status = "retake"
            result.message = (
                "The photo isn't clear enough for a reliable look. "
                + (" ".join(tips) + " " if tips else "")
                + "Please retake it, or choose 'continue anyway'."
            )
            return False
        result.quality_overridden = True
    return True
