"""The references step: example images of the conditions in the differential, from every configured reference
provider. A generated image is checked by the image model before it is shown (the engine runs the model, streamed
and timed like any step; ``dermchat/references/verify.py`` decides): one it did not recognise is hidden, with a
note."""

from __future__ import annotations

import dataclasses
from collections.abc import Generator, Iterator
from typing import Any

from dermchat.context import TurnContext
from dermchat.providers import Diagnoser, ReferenceGenerator
from dermchat.references import verify
from dermchat.request import TurnRequest
from dermchat.results import Reference, StepEvent, TurnResult
from dermchat.steps.turn import Turn

Verdict = tuple[bool | None, dict[str, Any]]


def find_references(turn: Turn) -> Iterator[StepEvent]:
    settings, diagnosis = turn.settings, turn.result.diagnosis
    if not settings.show_references or settings.references_per_condition == 0:
        return
    if diagnosis is None or diagnosis.abstained or not diagnosis.differential:
        return
    for provider_id in settings.references:
        yield from _from_provider(turn, provider_id)
    hidden = turn.result.hidden_references
    if hidden:
        turn.result.notices.append(
            f"{len(hidden)} generated image(s) were hidden because the image model did "
            "not recognise them as the intended condition."
        )


def _from_provider(turn: Turn, provider_id: str) -> Iterator[StepEvent]:
    provider, _ = turn.provider_or_notice(
        ReferenceGenerator, provider_id, "Some reference images are not shown ({why})."
    )
    if provider is None:
        return
    yield turn.start("references", provider)
    outcome = yield from turn.call("references", provider, lambda: provider.references(turn.ctx))
    references = outcome.value or []
    checked = outcome.error is None and (yield from _check_generated(turn, references))
    if outcome.error is not None or not checked:
        turn.result.notices.append(f"Reference images from {provider.label or provider.id} could not be prepared.")
        if outcome.error is not None:
            yield turn.fail("references", provider.id, outcome.error, "A reference-image step failed.")
        return
    turn.note_provider(provider)
    _keep(turn, references)
    yield turn.done("references", provider, outcome, f"{len(references)} reference image(s)")


def _check_generated(turn: Turn, references: list[Reference]) -> Generator[StepEvent, None, bool]:
    """Run the image model on every generated image awaiting a check; returns False when the model failed."""
    for ref in references:
        pending = ref.take_check()
        if pending is None:
            continue
        image, verifier_id = pending
        verdict = yield from _verdict(turn, image, ref.condition_id, verifier_id)
        if verdict is None:
            return False
        verify.record(ref, *verdict)
    return True


def _verdict(turn: Turn, image: Any, condition_id: str, verifier_id: str) -> Generator[StepEvent, None, Verdict | None]:
    """The image model's verdict on one generated image (``None`` when the model failed while judging)."""
    found = turn.app.provider(Diagnoser.capability, verifier_id)
    verifier = found if isinstance(found, Diagnoser) else None
    reason = verify.why_unchecked(verifier, verifier_id, condition_id)
    if verifier is None or reason is not None:
        return None, {"verifier": verifier_id, "reason": reason}
    name = turn.vocabulary.get(condition_id).name(turn.result.audience)
    yield StepEvent(
        step="references",
        kind="progress",
        provider_id=verifier.id,
        message=f"Checking the illustration of {name} with the image model",
    )
    probe = _probe(turn, image)
    outcome = yield from turn.call(
        "references", verifier, lambda: verifier.diagnose(dataclasses.replace(probe, progress=turn.ctx.progress))
    )
    if outcome.error is not None:
        yield turn.fail("references", verifier.id, outcome.error, "Checking a generated image failed.")
        return None
    assert outcome.value is not None
    return verify.judge(outcome.value, condition_id, verifier_id)


def _probe(turn: Turn, image: Any) -> TurnContext:
    """The generated image as a turn of its own: the same person's details, none of the user's photo's findings."""
    return TurnContext(
        settings=turn.settings,
        workdir=turn.workdir,
        image=image,
        request=TurnRequest(patient=turn.request.patient, options=turn.request.options),
        result=TurnResult(
            turn_id=turn.result.turn_id, audience=turn.result.audience, image_sha256=verify.image_sha256(image)
        ),
    )


def _keep(turn: Turn, references: list[Reference]) -> None:
    """Shown, or hidden when it is a generated image the image model did not recognise."""
    for ref in references:
        if ref.synthetic and ref.verified is False:
            turn.result.hidden_references.append(ref)
        else:
            turn.result.references.append(ref)
