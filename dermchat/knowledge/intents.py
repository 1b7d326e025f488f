"""Common follow-up questions, answered from the turn's own result before the knowledge base.

Why: "What should I do next?" on a red-tier photo opened with "A mole is a harmless group of cells" and "the
sources don't seem to cover your question": retrieval matched the words, not the question. The questions people
ask after a result are few (what next, how urgent, is it cancer, is it contagious, can I treat it myself, will it
go away, what is this); for these the answer starts with what this turn found (its tier and why, the likely
conditions, their warning signs), then the cited knowledge-base text follows.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from dermchat.vocabulary import Vocabulary

if TYPE_CHECKING:
    from dermchat.context import TurnContext
    from dermchat.knowledge.index import KnowledgeIndex

INTENTS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(rx, re.IGNORECASE))
    for name, rx in (
        (
            "how_urgent",
            r"\bhow (?:urgent|soon|quickly|serious|worried|bad)\b|\bis (?:it|this) (?:urgent|serious|an emergency|"
            r"bad)\b|\bshould i (?:be )?worr\w*|\bcan (?:it|this) wait\b",
        ),
        (
            "what_next",
            r"\bwhat (?:should|do|can|must) i do\b|\bwhat now\b|\bnext steps?\b|\bwhat happens next\b|"
            r"\b(?:should|do) i (?:need to )?(?:see|go to|visit|call) (?:a |the |my )?(?:doctor|gp|dermatologist|"
            r"clinician|hospital)\b",
        ),
        (
            "is_cancer",
            r"\b(?:is|could|can|might|may) (?:it|this|that) (?:be )?(?:a )?(?:cancer\w*|malignant|melanoma|"
            r"skin cancer)\b|\bdo i have (?:skin )?cancer\b|\bis it dangerous\b",
        ),
        (
            "contagious",
            r"\bcontagious\b|\bcatching\b|\binfectious\b|\bpass (?:it )?on\b|\bspread (?:it )?to (?:others|other "
            r"people|my)\b",
        ),
        (
            "self_treat",
            r"\b(?:treat|remove|get rid of|cure) (?:it|this|them) (?:myself|at home)\b|\bcan i (?:treat|remove|pop|"
            r"cut|burn|freeze|squeeze)\b|\bhome remed\w*|\bover the counter\b|\bwhat (?:cream|treatment)\b",
        ),
        (
            "go_away",
            r"\b(?:will|does|would) (?:it|this|they) (?:go away|heal|clear|disappear|get better)\b|\bhow long "
            r"(?:will|does) (?:it|this) last\b|\bis (?:it|this) permanent\b",
        ),
        (
            "what_is",
            r"\bwhat (?:is|'s) (?:it|this|that)\b|\bwhats this\b|\bwhat do i have\b|\bwhat could (?:it|this) be\b",
        ),
    )
)

OFF_TOPIC_REPLY = "I can only talk about skin photos and skin conditions."


def detect_intent(question: str) -> str | None:
    """The first matching intent ("what_next", "how_urgent", ...) of a follow-up question, or ``None``."""
    for name, pattern in INTENTS:
        if pattern.search(question or ""):
            return name
    return None


def _names(ids: list[str], vocab: Vocabulary, audience: str, last: str = " or ") -> str:
    names = [vocab.get(c).name(audience) for c in ids if c in vocab]
    return names[0] if len(names) <= 1 else ", ".join(names[:-1]) + last + names[-1]


def result_answer(intent: str, ctx: TurnContext, index: KnowledgeIndex, vocab: Vocabulary) -> str:
    """The part of the answer that comes from this turn's result (tier, likely conditions, warning signs)."""
    from dermchat.render import SAME_DAY_NEXT_STEP, TRIAGE_NEXT_STEP, triage_heading

    triage, diagnosis, audience = ctx.triage, ctx.diagnosis, ctx.audience
    likely = [e.condition_id for e in diagnosis.top(3)] if diagnosis is not None and not diagnosis.abstained else []
    lines: list[str] = []
    if triage is not None and intent in ("what_next", "how_urgent", "is_cancer", "self_treat", "go_away"):
        advice = SAME_DAY_NEXT_STEP if triage.same_day else (triage.advice or TRIAGE_NEXT_STEP.get(triage.tier, ""))
        drivers = f" because {_names(triage.drivers, vocab, audience)} can't be ruled out" if triage.drivers else ""
        heading = triage_heading(triage, "patient")
        lines.append(f"**Your result:** {heading}{drivers}. {advice}")
    if diagnosis is not None and diagnosis.abstained:
        lines.append("The image model could not assess the photo, so it can't say what this is; a clinician can.")
    elif intent == "is_cancer" and likely:
        malignant = (
            [
                e
                for e in diagnosis.differential
                if e.condition_id in vocab and vocab.get(e.condition_id).malignant and e.probability >= 0.05
            ]
            if diagnosis
            else []
        )
        if malignant:
            lines.append(
                "The image model can't rule out "
                + _names([e.condition_id for e in malignant], vocab, audience)
                + " on this photo; only an examination (often a small biopsy) can tell."
            )
        else:
            lines.append(
                "None of the skin cancers the image model knows looks likely on this photo, but a photo "
                "can't rule one out: see a doctor if it changes, bleeds or worries you."
            )
    elif intent in ("what_is", "contagious", "go_away", "self_treat") and likely:
        lines.append(f"The image model's likeliest conditions on this photo: {_names(likely, vocab, audience, ', ')}.")
    if intent in ("what_next", "how_urgent") and likely:
        signs = _red_flag_sentence(index, likely[0], audience)
        if signs:
            lines.append(f"**Watch for:** {signs}")
    return " ".join(lines)


def _red_flag_sentence(index: KnowledgeIndex, condition_id: str, audience: str) -> str:
    if condition_id not in index.kb:
        return ""
    entry = index.kb.get(condition_id)
    passages = entry.section("red_flags", audience) or entry.section("red_flags")
    statements = [s for p in passages for s in p.statements]
    return statements[0].text if statements else ""
