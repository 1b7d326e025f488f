"""Which kind of answer a turn gets: an explanation of the result, a follow-up answer, or intake.

- A differential (this turn's or the previous one's): explain it, or answer the question about it.
- No differential (no photo yet, or the image model abstained): if the question asks about a named condition
  ("is ringworm contagious?"), answer about it; if it asks about conditions suggested earlier ("are they
  contagious?"), answer for those; otherwise ask intake questions and list conditions to consider from what
  the user said (a description that merely contains a lay name still gets the list, led by that name).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dermchat.knowledge.answer import INJECTION_NOTICE, AnswerSettings, answer, diagnosis_focus, looks_like_injection
from dermchat.knowledge.intake import intake_explanation
from dermchat.results import Explanation

if TYPE_CHECKING:
    from dermchat.context import TurnContext
    from dermchat.knowledge.index import KnowledgeIndex

# "ringworm?" or "and psoriasis?" ask about a condition even without a cue word; a longer message without
# one ("red itchy ring on my arm, my cat has bald patches") is a description to match, not a question.
SHORT_QUESTION_WORDS = 4


def previous_considered(ctx: TurnContext) -> list[str]:
    """Conditions listed to consider in the previous turn (a follow-up may be about them)."""
    previous = ctx.previous
    if previous is None or previous.explanation is None:
        return []
    listed = [c.condition_id for c in previous.explanation.conditions_to_consider]
    return listed or [str(c) for c in previous.explanation.extra.get("conditions", [])]


def explain_turn(
    ctx: TurnContext, index: KnowledgeIndex, settings: AnswerSettings, generator: Any = None
) -> Explanation:
    diagnosis = ctx.diagnosis
    urgent = ctx.triage is not None and ctx.triage.tier == "urgent"
    focus = diagnosis_focus(diagnosis, ctx.triage.drivers if ctx.triage is not None else ())
    question = ctx.question or ""
    if focus:
        ctx.progress("Finding passages about the likely conditions", 0.3)
        return answer(index, question, ctx.audience, diagnosis, focus=focus, settings=settings, generator=generator,
                      urgent=urgent)
    abstained = diagnosis is not None and diagnosis.abstained
    analysis = index.analyze(question, ctx.audience) if question else None
    earlier = previous_considered(ctx)
    asks_about = analysis is not None and (bool(analysis.sections) or len(question.split()) <= SHORT_QUESTION_WORDS)
    if analysis is not None and asks_about and (analysis.mentioned or earlier):
        ctx.progress("Looking up the condition you asked about", 0.3)
        return answer(index, question, ctx.audience, None, focus=earlier if not analysis.mentioned else (),
                      settings=settings, generator=generator)
    ctx.progress("Matching your description to the knowledge base", 0.3)
    explanation = intake_explanation(index, question, ctx.history, ctx.audience, abstained=abstained)
    if looks_like_injection(question):
        explanation.notices.append(INJECTION_NOTICE)
    return explanation
