"""Which kind of answer a turn gets: an explanation of the result, a follow-up answer, or intake.

- A differential (this turn's or the previous one's): explain it, or answer the question about it.
- No differential (no photo yet, or the image model abstained): if the question asks about a named condition
  ("is ringworm contagious?"), answer about it; if it asks about conditions suggested earlier ("are they
  contagious?"), answer for those; otherwise ask intake questions and list conditions to consider from what
  the user said (a description that merely contains a lay name still gets the list, led by that name).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dermchat.knowledge.abcde import cite_abcde
from dermchat.knowledge.answer import (
    INJECTION_NOTICE,
    OFF_TOPIC_NOTICE,
    AnswerSettings,
    answer,
    diagnosis_focus,
    looks_like_injection,
    off_topic,
)
from dermchat.knowledge.intake import MIN_CONTENT_WORDS, PROVIDER_ID, intake_explanation
from dermchat.knowledge.intents import OFF_TOPIC_REPLY, detect_intent, result_answer
from dermchat.knowledge.query import tokenize
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
    """The explanation for this turn; a recognised follow-up question is answered from the result first, and
    the ABCDE passage is cited when the photo's description shows asymmetry, an abrupt border or many colours."""
    explanation = cite_abcde(_explain(ctx, index, settings, generator), ctx.morphology, index.kb, ctx.audience)
    intent = detect_intent(ctx.question or "")
    if intent is None or (ctx.triage is None and ctx.diagnosis is None):
        return explanation
    from dermchat.vocabulary import get_vocabulary

    lead = result_answer(intent, ctx, index, get_vocabulary())
    if not lead:
        return explanation
    return explanation.model_copy(
        update={
            "lead": lead,
            "notices": [n for n in explanation.notices if n != OFF_TOPIC_NOTICE],  # the question was understood
            "extra": {**explanation.extra, "intent": intent, "off_topic": False},
        }
    )


def _explain(ctx: TurnContext, index: KnowledgeIndex, settings: AnswerSettings, generator: Any = None) -> Explanation:
    diagnosis = ctx.diagnosis
    urgent = ctx.triage is not None and ctx.triage.tier == "urgent"
    focus = diagnosis_focus(diagnosis, ctx.triage.drivers if ctx.triage is not None else ())
    question = ctx.question or ""
    if focus:
        ctx.progress("Finding passages about the likely conditions", 0.3)
        return answer(
            index, question, ctx.audience, diagnosis, focus=focus, settings=settings, generator=generator, urgent=urgent
        )
    abstained = diagnosis is not None and diagnosis.abstained
    analysis = index.analyze(question, ctx.audience) if question else None
    earlier = previous_considered(ctx)
    asks_about = analysis is not None and (bool(analysis.sections) or len(question.split()) <= SHORT_QUESTION_WORDS)
    if analysis is not None and asks_about and (analysis.mentioned or earlier):
        ctx.progress("Looking up the condition you asked about", 0.3)
        return answer(
            index,
            question,
            ctx.audience,
            None,
            focus=earlier if not analysis.mentioned else (),
            settings=settings,
            generator=generator,
        )
    if (
        analysis is not None
        and not ctx.triage
        and detect_intent(question) is None
        and len(tokenize(question)) >= MIN_CONTENT_WORDS  # "hello" gets the intake questions
        and off_topic(index.search(question, k=3, audience=ctx.audience, analysis=analysis))
    ):
        return Explanation(
            provider_id=PROVIDER_ID,
            text=OFF_TOPIC_REPLY + " Attach a photo of the skin, or describe what you see, and I can help.",
            extra={"mode": "off_topic", "off_topic": True},
        )
    ctx.progress("Matching your description to the knowledge base", 0.3)
    explanation = intake_explanation(
        index, question, ctx.history, ctx.audience, abstained=abstained, urgent=urgent, leading=ctx.red_flag_conditions
    )
    if looks_like_injection(question):
        explanation.notices.append(INJECTION_NOTICE)
    return explanation
