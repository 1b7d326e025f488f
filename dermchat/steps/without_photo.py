"""A message without a photo: an empty one is refused, a follow-up is answered about the last result, anything
else gets conditions to consider (the explanation step does the answering)."""

from __future__ import annotations

from collections.abc import Iterator

from dermchat.results import StepEvent, StepName
from dermchat.steps.turn import Turn

NO_PHOTO_STEPS: tuple[StepName, ...] = ("quality", "diagnosis", "references")


def refuse_empty(turn: Turn) -> bool:
    """An empty message with no photo has nothing to answer; returns whether it was refused."""
    if turn.result.question:
        return False
    turn.result.status = "invalid_input"
    turn.result.message = "Your message was empty. Attach a photo of the skin, or describe what you see."
    return True


def carry_over(turn: Turn) -> Iterator[StepEvent]:
    """A follow-up keeps the last result's findings; with none, say there is no photo and skip its steps."""
    result, previous = turn.result, turn.request.previous
    if previous is not None and previous.diagnosis is not None:
        result.status = "followup"
        result.diagnosis = previous.diagnosis
        result.triage = previous.triage
        result.quality = previous.quality
        result.morphology = previous.morphology
        result.image_sha256 = previous.image_sha256
        return
    result.status = "no_image"
    result.triage = previous.triage if previous is not None else None
    result.message = (
        "I don't have a photo yet. You can attach one, or answer a few questions so I can suggest "
        "conditions to discuss with a clinician."
    )
    for step in NO_PHOTO_STEPS:
        yield StepEvent(step=step, kind="skipped", message="No photo in this message, so this step was skipped.")
