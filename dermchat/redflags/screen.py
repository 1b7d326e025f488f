"""Screening a message: the rules' hits, less the ones set aside, and one plain notice for the most urgent."""

from __future__ import annotations

import re

from dermchat.redflags.learned import LEARNED_PREFIX
from dermchat.redflags.rules import RULES, Rule
from dermchat.redflags.spelling import normalise
from dermchat.results import RedFlagHit

SOON_NOTICE = (
    "Please see a doctor soon (within about two weeks, sooner if it gets worse): you mentioned {what}, "
    "which is a warning sign that needs a check in person, whatever the photo shows."
)
NOW_NOTICE = (
    "Please get medical help now (today: an urgent appointment, urgent care or the emergency "
    "department; call emergency services if you feel very unwell): you mentioned {what}."
)

NEGATION_RE = re.compile(
    r"\b(?:no|not|never|without|isn'?t|hasn'?t|doesn'?t|don'?t|didn'?t|haven'?t|wasn'?t|nor|neither|stopped|none of "
    r"(?:my|the|his|her|their|them))\b(?:\W+\w+){0,3}\W*$",
    re.IGNORECASE,
)
"""A negation close before a warning sign's last word ("it is not bleeding", "no fever and no redness")."""


_KEEPS_GOING_RE = re.compile(r"^\W*(?:\w+\W+)?(?:stop|go away|quit|leave it alone)\b", re.IGNORECASE)
"""What follows a negation that makes the sign go on, not go away: "it will not stop itching", "won't go away"."""


def _negation_before(text: str, clause_start: int, position: int) -> bool:
    """A negation in the clause, at most about three words before ``position``, that does not mean "keeps going"."""
    negation = NEGATION_RE.search(text, max(clause_start, position - 40), position)
    if negation is None:
        return False
    rest = text[negation.start() :].split(maxsplit=1)
    return not (len(rest) == 2 and _KEEPS_GOING_RE.search(rest[1]))


def _clause_start(text: str, position: int) -> int:
    """Where the clause holding ``position`` begins: just after the last full stop, semicolon, ! ? or line break."""
    return max(text.rfind(sep, 0, position) for sep in ".;!?\n") + 1


def _negated(text: str, start: int, end: int) -> bool:
    """Whether the matched warning sign is negated: a negation in its clause just before its last word ("it is not
    bleeding") or just before its first ("no temperature ... a viral rash"); "will not stop itching" is no negation."""
    words = list(re.finditer(r"[\w']+", text[start:end]))
    last = start + words[-1].start() if words else start
    return _negation_before(text, _clause_start(text, last), last) or _negation_before(
        text, _clause_start(text, start), start
    )


_QUESTION_START_RE = re.compile(
    r"^\W*(?:what|what'?s|whats|is|are|can|could|do|does|how|why|when|which|will|would)\b", re.IGNORECASE
)
_ABOUT_SOMEONE_RE = re.compile(  # "I", "me", "my", "his": someone's own skin ("asking for a friend" counts too)
    r"\b(?:i|i'm|i've|im|ive|me|mine|we|us|my|our|his|her|the one)\b", re.IGNORECASE
)
_CURIOSITY_RE = re.compile(
    # "just curious" and "out of curiosity" are _HYPOTHETICAL_RE's, which sets any sign aside before questions are read
    r"\basking for (?:my |a |our )?(?:\w+ )?(?:homework|class|essay|project|exam|course|assignment|coursework)\b",
    re.IGNORECASE,
)
_HYPOTHETICAL_RE = re.compile(  # said outright: nobody has the sign now
    r"\b(?:hypothetically|just curious|out of curiosity|i don'?t have (?:one|it|any)|nobody'?s? (?:is )?(?:ill|sick|unwell)|"
    r"nobody has (?:it|one|any)|in case i ever need|for the future|mine are all (?:normal|fine|the same))\b",
    re.IGNORECASE,
)
_GONE_NOW_RE = re.compile(  # "... last week with a cold, it's gone now"
    r"^[^.;!?\n]*?\b(?:it'?s|it has|that'?s|which has|has) (?:all )?(?:gone (?:now|away)|cleared(?: up)?|better now)\b",
    re.IGNORECASE,
)
_REMOVED_BEFORE_RE = re.compile(  # "had a mole removed on Monday ... a spot of blood on the dressing"
    r"\b(?:had|got|having) (?:a |my |the |this |that )?(?:mole|spot|lesion|growth|lump|it) (?:\w+ )?(?:removed|cut out|excised|"
    r"biopsied|frozen off)\b",
    re.IGNORECASE,
)
_EXPLAINED_RE = re.compile(  # seen and explained: "the dermatologist looked at it last month, said it's benign"
    r"\b(?:dermatologist|doctor|gp|derm|nurse|consultant|specialist|midwife)\b(?:\W+\w+){0,16}?\W+(?:said|says|told (?:me|us|"
    r"her|him)|confirmed)\b(?:\W+[\w']+){0,4}?\W+(?:benign|fine|harmless|nothing to worry|not to worry|normal|hormon\w*)\b",
    re.IGNORECASE,
)
_NAIL_ART_RE = re.compile(r"\b(?:painted|nail art|design|decal|sticker)\b", re.IGNORECASE)
_NOT_A_LESION_RE = re.compile(  # what "it" bled from when it was not a lesion: "popped a pimple ... it bled"
    r"\b(?:pimples?|zits?|whiteheads?|blackheads?|ingrown hairs?|lips?|gums?|nose|tongue|cut|graze|scratch|knee|finger)\b",
    re.IGNORECASE,
)
_LESION_NAMED_RE = re.compile(
    r"\b(?:mole|moles|freckle|spot|lump|growth|birthmark|lesion|naevus|nevus|mark)\b", re.IGNORECASE
)
_TAKEN_OFF_RE = re.compile(  # "the mole that bled in March was removed": the sign belongs to a lesion that is gone
    r"^(?:\W+\w+){0,8}?\W+(?:was|were|got|had it|been|has been|have been) (?:\w+ )?(?:removed|cut out|cut off|excised|"
    r"taken off|frozen off|burnt off|lasered off)\b",
    re.IGNORECASE,
)
_PAST_SINCE_RE = re.compile(  # "last year I had swollen lips ..., nothing since"
    r"\b(?:last year|(?:(?:\d+|a|one|two|three|few|several) )?years? ago|as a (?:child|kid)|when i was (?:a )?(?:young|little|"
    r"kid|child|teen\w*))\b",
    re.IGNORECASE,
)
_NOTHING_SINCE_RE = re.compile(  # "..., nothing since", "I carry an EpiPen since." (not "since yesterday")
    r"^[^.;!?\n]*?\b(?:(?:nothing|no (?:problems?|issues?|reactions?)|fine|ok|okay)(?: ever)? since\b|since(?: then)?\s*(?:[.;!?]|$)"
    r"|ever since\b)",
    re.IGNORECASE,
)
_CHILD_RE = re.compile(
    r"\b(?:son|daughter|child|children|kid|kids|boy|girl|toddler|teen\w*|grandson|granddaughter|(?:[1-9]|1[0-7])[- ]?(?:years?|"
    r"yrs?)[- ]old)\b",
    re.IGNORECASE,
)
_ADULT_AGE_RE = re.compile(r"\b(?:1[89]|[2-9]\d)\b(?![- ]?(?:weeks?|months?|mins?|minutes|cm|mm|%))")
_SETTLED_SINCE_RE = re.compile(  # "... two years ago and has been fine since"
    r"^(?:\W+\w+){0,10}?\W+(?:years?|months?) ago\b(?:\W+[\w']+){0,6}?\W+(?:(?:fine|ok|okay|normal|no (?:problems?|issues?|"
    r"change\w*)|nothing|(?:hasn'?t|has not|not) (?:changed|bled|been a problem))(?: ever)? since\b|healed (?:up )?(?:fine|well|"
    r"nicely)|turned out (?:to be|it was)|cleared (?:up)?|went away)",
    re.IGNORECASE,
)
_EVEN_TAN_RE = re.compile(r"\ball (?:of )?(?:my|his|her|their|our) (?:moles|freckles)\b", re.IGNORECASE)
_SUN_RE = re.compile(r"\b(?:tan|tanned|tanning|sun|sunny|summer|holiday|beach)\b", re.IGNORECASE)


def _settled_long_ago(text: str, match: re.Match[str]) -> bool:
    """A sign told as past ("last year", "two years ago") earlier in its sentence and "nothing since" after it."""
    before = text[_clause_start(text, match.start()) : match.start()]
    return bool(_PAST_SINCE_RE.search(before) and _NOTHING_SINCE_RE.search(text[match.end() :]))


def _bled_from_something_else(text: str, match: re.Match[str]) -> bool:
    """ "it bled" where "it" is a popped pimple, a bitten lip or a cut, and no lesion is named before it."""
    if not match.group(0).lower().startswith("it"):
        return False
    before = text[: match.start()]
    return bool(_NOT_A_LESION_RE.search(before) and not _LESION_NAMED_RE.search(before))


def _not_a_report(rule: Rule, text: str, match: re.Match[str]) -> bool:
    """Whether a sign is not being reported about a lesion now. For any sign, each narrow: settled long ago ("it bled
    once two years ago and has been fine since"), gone ("it's gone now"), or hypothetical said outright ("just
    curious", "I don't have one"). For "see a doctor soon" signs also: a question asked in general ("what does it
    mean if a mole bleeds?", with no "I", "mine" or "my mole"), a lesion since removed, a new mole in a child, and all
    of someone's moles darkening evenly with a tan."""
    after = text[match.end() :]
    if _settled_long_ago(text, match) or _SETTLED_SINCE_RE.search(after) or _GONE_NOW_RE.search(after):
        return True  # any urgency: "last year I had swollen lips from peanuts, nothing since"
    if _HYPOTHETICAL_RE.search(text):
        return True  # any urgency, said outright: "hypothetically, if someone's face puffed up ..."
    if rule.urgency == "now":
        return False
    if rule.id == "bleeding_lesion" and _REMOVED_BEFORE_RE.search(text[: match.start()]):
        return True  # a wound where a mole was removed may spot blood
    if rule.id == "bleeding_lesion" and _bled_from_something_else(text, match):
        return True
    if _EXPLAINED_RE.search(text) or (rule.id == "nail_streak" and _NAIL_ART_RE.search(text)):
        return True  # seen and explained by a clinician; a line painted on a nail
    asked = "?" in text and bool(_QUESTION_START_RE.search(text))
    if asked and (_CURIOSITY_RE.search(text) or not _ABOUT_SOMEONE_RE.search(text)):
        return True
    if _TAKEN_OFF_RE.search(after):
        return True
    if rule.id.startswith("new_mole") and _CHILD_RE.search(text) and not _ADULT_AGE_RE.search(text):
        return True  # new moles are expected in childhood; the sign is "a new mole in adult life"
    even = _EVEN_TAN_RE.search(text)  # the change matched must be the one said of all the moles
    return rule.id == "changing_mole" and bool(
        even and even.start() <= match.start() < even.end() and _SUN_RE.search(text)
    )


def screen(text: str, *, learned: bool = True) -> list[RedFlagHit]:
    """Warning signs in ``text`` (a user's message), most urgent first; empty when there are none.

    ``learned``: when no rule fires, also ask the learned screen (``learned.py``), which can add a sign the rules
    missed and never takes one away. Off only to measure the rules alone."""
    fixed = normalise(text)
    hits: list[RedFlagHit] = []
    for rule in RULES:
        for match in rule.pattern.finditer(fixed):
            if rule.negatable and _negated(fixed, match.start(), match.end()):
                continue
            if _not_a_report(rule, fixed, match):
                continue
            hits.append(
                RedFlagHit(
                    id=rule.id, urgency=rule.urgency, what=rule.what, source=rule.source, matched=match.group(0).strip()
                )
            )
            break
    if learned:
        from dermchat.redflags.learned import learned_hits

        hits.extend(learned_hits(text, hits))
    return sorted(hits, key=lambda h: h.urgency != "now")


def notice(hits: list[RedFlagHit]) -> str | None:
    """One plain notice for the most urgent hits ("get medical help now" beats "see a doctor soon")."""
    if not hits:
        return None
    urgency = "now" if any(h.urgency == "now" for h in hits) else "soon"
    named = list(dict.fromkeys(h.what for h in hits if h.urgency == urgency))
    what = named[0] if len(named) == 1 else ", ".join(named[:-1]) + " and " + named[-1]
    if all(h.id.startswith(LEARNED_PREFIX) for h in hits if h.urgency == urgency):
        what = "what may be " + what  # the learned screen names the closest sign, not words the user used
    return (NOW_NOTICE if urgency == "now" else SOON_NOTICE).format(what=what)
