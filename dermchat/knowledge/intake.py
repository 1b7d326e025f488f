"""Conditions to consider from what the user said, when there is no usable image or the image model abstained.

Why: a phone photo of a rash is outside what the offline HAM10000 classifier knows, and some users have no
photo at all. Instead of guessing, the assistant asks a few structured intake questions and lists conditions
from the knowledge base that match the description, honestly worded as a list to discuss with a clinician:
no probabilities, each with why it came up, its red flags and citations. Questions the user has already
answered (a body site, a duration, a fever...) are not asked again.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dermchat.knowledge.citations import CitationBook
from dermchat.knowledge.query import tokenize
from dermchat.results import Audience, ConditionToConsider, Explanation

if TYPE_CHECKING:
    from dermchat.knowledge.index import KnowledgeIndex

PROVIDER_ID = "kb-rag"
MAX_CONDITIONS = 4
MAX_RED_FLAGS = 3
MIN_CONTENT_WORDS = 2  # fewer words than this ("hi", "help") give no basis for a list
WHY_SECTIONS = ("how_it_looks", "what_it_is", "who_gets_it", "on_darker_skin")


@dataclass(frozen=True)
class IntakeQuestion:
    id: str
    patient: str
    clinician: str
    answered_by: re.Pattern[str]


INTAKE_QUESTIONS: tuple[IntakeQuestion, ...] = (
    IntakeQuestion(
        "site",
        "Where on your body is it?",
        "Site and distribution?",
        re.compile(
            r"\b(face|cheeks?|nose|forehead|scalp|head|ears?|eyes?|eyelids?|lips?|mouth|neck|chest|breasts?|back|"
            r"belly|stomach|abdomen|tummy|groin|genitals?|bottom|buttocks?|arms?|armpits?|elbows?|wrists?|hands?|"
            r"palms?|fingers?|nails?|legs?|thighs?|knees?|shins?|ankles?|feet|foot|soles?|toes?|trunk|skin folds?|"
            r"all over)\b",
            re.I,
        ),
    ),
    IntakeQuestion(
        "duration",
        "How long have you had it, and is it changing?",
        "Duration and evolution?",
        re.compile(
            r"\b(\d+|a|an|one|two|few|several|couple of)\s*(hours?|days?|weeks?|months?|years?)\b|"
            r"\b(yesterday|today|since|always had|recently|new|for ages|long time)\b",
            re.I,
        ),
    ),
    IntakeQuestion(
        "symptoms",
        "Does it itch, hurt or burn?",
        "Symptoms (pruritus, pain, burning)?",
        re.compile(
            r"\b(itch\w*|pain\w*|hurts?|sore|burn\w*|sting\w*|tender|numb|tingl\w*|no symptoms|doesn'?t itch)\b", re.I
        ),
    ),
    IntakeQuestion(
        "appearance",
        "What does it look like: colour, flat or raised, blisters, scale or crust, one spot or many?",
        "Morphology (primary lesion, colour, scale, configuration, number)?",
        re.compile(
            r"\b(red|pink|brown|black|white|purple|yellow|dark|pale|scaly|scales?|flaky|crust\w*|blisters?|bumps?|"
            r"lumps?|spots?|rings?|ring-shaped|raised|flat|patch(es)?|plaques?|pimples?|pus|weep\w*|ooz\w*|"
            r"rash|welts?|hives|dry|cracked|shiny|rough)\b",
            re.I,
        ),
    ),
    IntakeQuestion(
        "contacts",
        "Does anyone around you (family, school, work, pets) have something similar?",
        "Contacts or household members affected? Relevant exposures (travel, pets, new products, drugs)?",
        re.compile(
            r"\b(family|partner|wife|husband|son|daughter|kids?|children|school|nursery|household|roommate|"
            r"housemates?|pets?|dog|cat|nobody else|no one else|others? (have|has))\b",
            re.I,
        ),
    ),
    IntakeQuestion(
        "fever",
        "Do you have a fever or feel unwell?",
        "Systemic symptoms (fever, malaise)?",
        re.compile(
            r"\b(fever\w*|temperature|unwell|chills?|shivers?|feel(ing)? (ill|sick|fine|well)|no fever)\b", re.I
        ),
    ),
)


def user_text(question: str, history: Sequence[dict[str, str]] | None) -> str:
    """What the user has said so far in this chat (their own messages only, newest last)."""
    said = []
    for message in history or ():
        if message.get("role") == "user" and isinstance(message.get("content"), str):
            said.append(message["content"])
    said.append(question or "")
    return "\n".join(s for s in said if s.strip())


def open_intake_questions(text: str, audience: Audience) -> list[str]:
    """The intake questions the user has not answered yet, in the audience's wording."""
    return [
        (q.clinician if audience == "clinician" else q.patient)
        for q in INTAKE_QUESTIONS
        if not q.answered_by.search(text)
    ]


REASSURING_RE = re.compile(r"\b(?:harmless|not dangerous|nothing to worry)\b", re.IGNORECASE)
"""Sentences that reassure ("A mole is a harmless group of cells"): left out when the user described a warning sign."""


def conditions_to_consider(
    index: KnowledgeIndex,
    text: str,
    audience: Audience,
    book: CitationBook,
    *,
    limit: int = MAX_CONDITIONS,
    urgent: bool = False,
    leading: Sequence[str] = (),
) -> list[ConditionToConsider]:
    """Conditions whose KB text best matches the description, each with a cited 'why' and its red flags.

    ``urgent``: the turn says "see a doctor" (a red flag in the user's words), so reassuring sentences are left out.
    ``leading``: conditions listed first whatever the match, because the user described one of their warning signs
    (a story such as "my freckle went from light brown to black" matches pale patches better than it matches moles).
    """

    def fits(statement: object) -> bool:
        return not (urgent and REASSURING_RE.search(getattr(statement, "text", "")))

    if len(tokenize(text)) < MIN_CONTENT_WORDS:
        return []
    result = index.search(text, k=40, audience=audience)
    out: list[ConditionToConsider] = []
    known = [c for c in leading if c in index.kb]
    for condition_id in list(dict.fromkeys([*known, *result.conditions()]))[:limit]:
        hits = [
            h
            for h in result.hits
            if h.chunk.condition_id == condition_id
            and h.chunk.section in WHY_SECTIONS
            and h.chunk.audience in ("all", audience)
        ]
        entry = index.kb.get(condition_id)
        passages = entry.section("what_it_is", audience) or entry.section("what_it_is")
        options = [(s, h.chunk.section) for h in hits for s in h.chunk.statements[:1]]
        options += [(s, "what_it_is") for p in passages for s in p.statements]
        options = [(s, sec) for s, sec in options if fits(s)]
        if not options:
            continue
        why_statement, why_section = options[0]
        flags = [
            s
            for p in (entry.section("red_flags", audience) or entry.section("red_flags"))
            for s in p.statements
            if fits(s)
        ]
        out.append(
            ConditionToConsider(
                condition_id=condition_id,
                why=book.cite(condition_id, why_section, why_statement),
                red_flags=[book.cite(condition_id, "red_flags", s) for s in flags[:MAX_RED_FLAGS]],
            )
        )
    return out


INTRO = {
    "patient": (
        "Without a photo the image model can't help, so here are conditions that match what you described. "
        "This is a list to discuss with a clinician, not a diagnosis, and it is not ranked by likelihood."
    ),
    "clinician": (
        "No image-based differential is available. Conditions retrieved from the history given so far "
        "(retrieval matches, not probabilities):"
    ),
}
INTRO_ABSTAINED = {
    "patient": (
        "The image model could not judge this photo, so here are conditions that match what you described. "
        "This is a list to discuss with a clinician, not a diagnosis, and it is not ranked by likelihood."
    ),
    "clinician": (
        "The image model abstained. Conditions retrieved from the history given so far "
        "(retrieval matches, not probabilities):"
    ),
}
ASK_MORE = {
    "patient": "Tell me a little about it and I can suggest conditions to discuss with a clinician.",
    "clinician": "Give a short history and morphology to retrieve conditions to consider.",
}


def intake_explanation(
    index: KnowledgeIndex,
    question: str,
    history: Sequence[dict[str, str]] | None,
    audience: Audience,
    *,
    abstained: bool = False,
    urgent: bool = False,
    leading: Sequence[str] = (),
) -> Explanation:
    """Intake questions plus conditions to consider (``leading`` ones first), as one structured explanation."""
    text = user_text(question, history)
    book = CitationBook(index.kb)
    considered = conditions_to_consider(index, text, audience, book, urgent=urgent, leading=leading)
    if considered:
        intro = (INTRO_ABSTAINED if abstained else INTRO)[audience]
    else:
        intro = ASK_MORE[audience]
    return Explanation(
        provider_id=PROVIDER_ID,
        text=intro,
        citations=book.citations,
        conditions_to_consider=considered,
        intake_questions=open_intake_questions(text, audience),
        extra={"mode": "conditions_to_consider", "conditions": [c.condition_id for c in considered]},
    )
