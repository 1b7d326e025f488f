"""The references step: example images of the conditions in the differential, from every configured reference
provider; a generated image the image model did not recognise is hidden, with a note."""

from __future__ import annotations

from typing import Iterator

from dermchat.providers import ReferenceGenerator
from dermchat.results import Reference, StepEvent
from dermchat.steps.turn import Turn


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
    provider, why_not = turn.provider(ReferenceGenerator, provider_id)
    if provider is None:
        if why_not:
            turn.result.notices.append(f"Some reference images are not shown ({turn.for_reader(why_not)}).")
        return
    yield turn.start("references", provider)
    outcome = yield from turn.call("references", provider, lambda: provider.references(turn.ctx))
    if outcome.error is not None:
        turn.result.notices.append(f"Reference images from {provider.label or provider.id} could not be prepared.")
        yield turn.fail("references", provider.id, outcome.error, "A reference-image step failed.")
        return
    turn.note_provider(provider)
    references = outcome.value or []
    _keep(turn, references)
    yield turn.done("references", provider, outcome, f"{len(references)} reference image(s)")


def _keep(turn: Turn, references: list[Reference]) -> None:
    """Shown, or hidden when it is a generated image the image model did not recognise."""
    for ref in references:
        if ref.synthetic and ref.verified is False:
            turn.result.hidden_references.append(ref)
        else:
            turn.result.references.append(ref)
