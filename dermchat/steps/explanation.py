"""The explanation step: plain-language sources about the diagnosis (or answers to a follow-up question)."""

from __future__ import annotations

from collections.abc import Iterator

from dermchat.providers import Explainer
from dermchat.results import StepEvent
from dermchat.steps.turn import Turn


def explain(turn: Turn) -> Iterator[StepEvent]:
    provider, _ = turn.provider_or_notice(
        Explainer, turn.settings.explainer, "No explanation this time ({why}).", technical=True
    )
    if provider is None:
        return
    yield turn.start("explanation", provider)
    outcome = yield from turn.call("explanation", provider, lambda: provider.explain(turn.ctx))
    if outcome.error is not None:
        turn.result.notices.append("The explanation could not be prepared this time.")
        yield turn.fail("explanation", provider.id, outcome.error, "The explanation step failed.")
        return
    explanation = outcome.value
    assert explanation is not None
    turn.note_provider(provider)
    if not turn.settings.show_citations:
        explanation = explanation.model_copy(update={"citations": []})
    turn.result.explanation = explanation
    yield turn.done("explanation", provider, outcome, f"{len(explanation.citations)} source(s) cited")
