"""Red-flag screen of what the user typed: "my mole has started bleeding" means "see a doctor", photo or not.

Why: a text-only message such as "I have a mole on my back that has started bleeding and it itches" used to get
"Nearly all moles stay harmless for life" and no advice to see anyone, because triage only ever came from an
image model. Warning signs are in the user's words, so they are screened in the user's words: each rule below
restates one warning sign from a knowledge-base "Red flags" section (``source`` names the file in
``dermchat/data/kb``), in plain patient phrasing, after common misspellings are corrected against the rules'
own key words (a real English word is never "corrected": ``data/redflag_real_words.txt``). A hit sets the
triage tier (``safety.with_red_flags``) and adds a plain "see a doctor soon" or "get help now" notice whatever the
photo says.

It is a deliberately simple, auditable screen (regular expressions, no model): it errs towards flagging, a
negation right before a warning sign ("it is not bleeding") is respected, and its sensitivity and false-alarm
rate on ``dermchat/data/redflag_phrasings.jsonl`` are reported by ``python -m dermchat eval-redflags``.
"""

from __future__ import annotations

import difflib
import functools
import re
from dataclasses import dataclass
from typing import Literal

from dermchat.results import RedFlagHit

Urgency = Literal["soon", "now"]

SOON_NOTICE = (
    "Please see a doctor soon (within about two weeks, sooner if it gets worse): you mentioned {what}, "
    "which is a warning sign that needs a check in person, whatever the photo shows."
)
NOW_NOTICE = (
    "Please get medical help now (today: an urgent appointment, urgent care or the emergency "
    "department; call emergency services if you feel very unwell): you mentioned {what}."
)

_LESION = r"(?:mole|moles|spot|spots|freckle|mark|lesion|growth|lump|bump|patch|it)"
_STILL_THE_LESION = r"(?:mole|moles|spot|spots|freckle|freckles|mark|lesion|growth|lump|bump|patch|birthmark|skin|area)"
_OTHER_SUBJECT = (  # "... and my eczema itches", "..., my psoriasis is spreading": the sign belongs to something else
    r"(?:(?:and|but|while|whereas|though|although|plus|yet)\W+|(?<=, ))(?:my|his|her|their|our|the|this)\W+"
    rf"(?!{_STILL_THE_LESION}\b)\w+"
)
# up to eight words between a lesion word and its warning sign, none of them starting another subject's clause
_WORDS_BETWEEN = rf"(?:\W+(?!{_OTHER_SUBJECT})\w+){{0,8}}?\W+"
_TURNED_DARK = (  # "went from light brown to black", "has turned black", "has gone really dark"
    r"(?:went|gone|turned|turning|turns|became|become|becoming|going) (?:from (?:\w+ ){1,2}to )?(?:(?:very|really|much|"
    r"quite|completely|all|more|almost|nearly|pretty|a lot) )?(?:black\w*|dark\w*|blue\w*|grey\w*|gray\w*)\b"
)


@dataclass(frozen=True)
class Rule:
    """One warning sign: what the user may write, how urgent it is, and which KB passage says so."""

    id: str
    urgency: Urgency
    what: str  # plain words for the notice ("a mole or spot that bleeds")
    source: str  # knowledge-base condition file whose red-flags section states it
    pattern: re.Pattern[str]
    negatable: bool = True  # "not bleeding" cancels it (rules that are negative by nature set False)


def _rx(text: str) -> re.Pattern[str]:
    return re.compile(text, re.IGNORECASE)


RULES: tuple[Rule, ...] = (
    Rule(
        "bleeding_lesion",
        "soon",
        "a mole or spot that bleeds",
        "melanoma",
        _rx(
            rf"\b{_LESION}\b{_WORDS_BETWEEN}(?:bleed\w*|bled|blood\w*)\b|\b(?:bleed\w*|bloody)\b{_WORDS_BETWEEN}"
            rf"{_LESION}\b|\b(?:started|keeps?|began) (?:to )?bleed\w*|"
            # blood found on clothes or bedding, then traced to the spot: "blood on my pillow from the mole"
            rf"\bblood (?:on|over|all over|onto) (?:\w+\W+){{1,8}}?{_LESION}\b"
        ),
    ),
    Rule(
        "changing_mole",
        "soon",
        "a mole or spot that is changing",
        "melanocytic_nevus",
        _rx(
            rf"\b(?:mole|moles|freckle|spot|mark|birthmark)\b{_WORDS_BETWEEN}(?:chang\w*|grow\w*|grew|getting (?:bigger|"
            rf"darker|larger|raised)|got (?:bigger|darker|larger)|bigger|darker|larger|spread\w*|new colou?rs?|"
            rf"raised now|different (?:colou?r|shape)|{_TURNED_DARK}|twice (?:the|its) size|doubled|(?:now|become|became|"
            rf"gone|got|getting) (?:\w+ )?(?:raised|lumpy|bumpy)|(?:irregular|ragged|jagged|uneven|blurr\w*|fuzzy) "
            rf"(?:edges?|borders?|outline))|\b(?:edges?|borders?|outline) of (?:my |the |this |that )?(?:mole|spot|freckle)\b"
            rf"(?:\W+\w+){{0,3}}?\W+(?:irregular|ragged|jagged|uneven|blurr\w*|fuzzy|notched)\b|"
            r"\b(?:changing|changed|growing|evolving) (?:mole|spot|freckle)"
        ),
    ),
    Rule(
        "itchy_mole",
        "soon",
        "a mole that itches, crusts or hurts",
        "melanoma",
        _rx(
            rf"\b(?:mole|moles|freckle|birthmark)\b{_WORDS_BETWEEN}(?:itch\w*|crust\w*|scab\w*|ooz\w*)\b|"
            # pain only close to the lesion word: sore muscles or a sore throat later in the message are not the mole
            r"\b(?:mole|freckle|birthmark)\b(?:\W+\w+){0,4}?\W+(?:hurts?|hurting|painful|tender|sore)\b|"
            r"\b(?:itchy|crusty|crusting|painful|sore|tender) (?:mole|freckle|birthmark)|"
            # the itch placed at the mole after another subject: "I have a mole and my back itches around it"
            r"\b(?:mole|freckle|birthmark)\b(?:\W+\w+){0,12}?\W+(?:itch\w*|hurts?|sore|crust\w*) (?:all )?(?:around|near|next to|beside|"
            r"under) (?:it|the mole|my mole|the freckle|the birthmark)\b"
        ),
    ),
    Rule(
        "new_mole_adult",
        "soon",
        "a new mole in adult life",
        "melanocytic_nevus",
        _rx(
            r"\bnew (?:dark |black |brown )?(?:mole|moles|freckle)\b|\bnew (?:dark|black|dark brown) (?:spot|mark)\b|"
            r"\b(?:mole|dark spot)s? (?:that )?(?:just |recently )?(?:appeared|came up|showed up)\b"
        ),
    ),
    Rule(
        "ugly_duckling",
        "soon",
        "a spot that looks unlike your other moles",
        "melanoma",
        _rx(
            r"\b(?:looks?|is) (?:different|unlike) (?:from |to |than )?(?:all )?(?:my |the )?other (?:moles|spots)\b|"
            r"\b(?:several|many|multiple|different) colou?rs\b|\b(?:black and blue|blue[- ]black)\b|"
            r"\b(?:looks?|looking|stands? out) like (?:an? |the )?ugly duckling\b|"
            rf"\b(?:mole|freckle|spot|birthmark)\b{_WORDS_BETWEEN}(?:two|three|2|3) (?:\w+ )?colou?rs\b"
        ),
    ),
    Rule(
        "nonhealing_sore",
        "soon",
        "a sore or spot that has not healed",
        "basal_cell_carcinoma",
        _rx(
            r"\b(?:won'?t|will not|doesn'?t|does not|didn'?t|did not|hasn'?t|has not|not|never|isn'?t|is not) "
            r"(?:\w+ )?heal(?:ed|ing)?\b|\b(?:keeps|keep) (?:coming back|scabbing|opening|breaking open)\b|"
            r"\bnon[- ]?healing\b|\b(?:sore|scab|ulcer|wound)s?\b(?:\W+\w+){0,6}?\W+(?:(?:been )?there|had it|lasted|for) "
            r"(?:for |over )?(?:\d+|three|four|five|six|eight|several|many) (?:weeks|months)\b|\b(?:sore|scab|ulcer|wound)s?"
            r"\b(?:\W+\w+){0,4}?\W+(?:never|won'?t|doesn'?t|does not|will not) (?:go|goes|going) away\b"
        ),
        negatable=False,
    ),
    Rule(
        "growing_lump",
        "soon",
        "a lump or growth that is getting bigger quickly",
        "squamous_cell_carcinoma",
        _rx(
            r"\b(?:lump|bump|growth|nodule|spot|mole)s?\b(?:\W+\w+){0,6}?\W+(?:grow\w*|grew|getting bigger|got bigger|"
            r"doubled)\b(?:\W+\w+){0,3}?\W*(?:fast|quickly|rapidly|very quickly|in (?:a few|two|2|three|3) weeks|"
            r"every (?:day|week))\b|\b(?:fast|rapidly|quickly)[- ]growing\b"
        ),
    ),
    Rule(
        "nail_streak",
        "soon",
        "a dark line in a nail",
        "melanoma",
        _rx(
            r"\b(?:dark|black|brown) (?:line|streak|stripe|band)\b(?:\W+\w+){0,4}?\W+(?:nail|nails|fingernail|toenail|"
            r"thumbnail|thumb nail)"
        ),
    ),
    Rule(
        "fever_spreading_red",
        "now",
        "fever with red, hot or spreading skin",
        "cellulitis",
        _rx(
            r"\b(?:(?<!hay )fever\w*|high temperature|temperature|shiver\w*|chills|rigors)\b(?:\W+\w+){0,12}?\W+(?:red\w*|hot|"
            r"swell\w*|swollen|spread\w*|rash|blister\w*|pus|sores?)\b|\b(?:red\w*|hot|swollen|spread\w*|rash|"
            r"blister\w*|pus|sores?)\b(?:\W+\w+){0,12}?\W+(?:(?<!hay )fever\w*|high temperature|shiver\w*|chills|rigors)\b"
        ),
    ),
    Rule(
        "spreading_redness",
        "now",
        "redness that is spreading fast",
        "cellulitis",
        _rx(
            r"\b(?:red\w*|swelling|infection|rash)\b(?:\W+\w+){0,4}?\W+spread\w* (?:fast|quickly|rapidly|up|"
            r"every hour|by the hour)|\b(?:red (?:line|streak)s?)\b|\b(?:red\w*|swelling|infection)\b(?:\W+\w+){0,6}?\W+"
            r"(?:getting (?:bigger|larger|wider)|growing|spreading) (?:by the hour|every hour|fast|quickly|rapidly)\b"
        ),
    ),
    Rule(
        "non_blanching",
        "now",
        "a rash of spots that do not fade under pressure",
        "drug_eruption",
        _rx(
            r"\bnon[- ]?blanching\b|\b(?:doesn'?t|does not|don'?t|do not|won'?t|didn'?t|did not) (?:fade|"
            r"go away|disappear|blanch)\w* (?:when|under|with|if) (?:i |you )?(?:press|push|a glass|the glass|glass)|"
            r"\bglass test\b|\bpurpl\w* (?:spots?|rash|dots|blotches|patches)|\bpetechi\w*|\bpurpura\b"
        ),
        negatable=False,
    ),
    Rule(
        "eye_involvement",
        "now",
        "a rash, sores or blisters near the eye",
        "herpes_zoster",
        _rx(
            r"\b(?:shingles|blisters?|rash|sores?|cold sores?|spots)\b(?:\W+\w+){0,5}?\W+(?:near|around|on|by|next to|"
            r"close to|in)\W+(?:\w+\W+){0,4}(?:eye|eyes|eyelids?|tip of (?:my |the )?nose)\b|\b(?:shingles|rash)\b(?:\W+\w+)"
            r"{0,8}?\W+(?:eye|vision|sight)\b(?:\W+\w+){0,3}?\W+(?:hurts?|painful|red|sore|blurr\w*|chang\w*)"
        ),
    ),
    Rule(
        "anaphylaxis",
        "now",
        "swelling of the face, lips or throat, or trouble breathing",
        "urticaria",
        _rx(
            r"\b(?:lips?|tongue|throat|face|eyes?)\b(?:\W+\w+){0,3}?\W+(?:swell\w*|swollen|puff\w*)|\b(?:swell\w*|swollen)"
            r"\W+(?:\w+\W+){0,2}(?:lips?|tongue|throat|face)\b|\bthroat (?:feels |is |getting |gets )?(?:tight\w*|"
            r"closing)|\btight\w* (?:in )?(?:my |the )?throat\b|\b(?:trouble|difficulty|hard|struggling|can'?t|cannot) "
            r"(?:to )?breath\w*|\bwheez\w*|\b(?:fainted|fainting|feel\w* faint|collapsed|collapsing)\b"
        ),
    ),
    Rule(
        "skin_peeling_blisters",
        "now",
        "blistering or peeling skin, or sore mouth and eyes with a rash",
        "drug_eruption",
        _rx(
            r"\bskin (?:is )?(?:peeling|coming) off\b|\b(?:peeling|blistering) (?:skin )?all over\b|\bblisters? "
            r"(?:all over|everywhere|spreading)\b|\b(?:blisters?|sores?) (?:in|inside) (?:my |the )?(?:mouth|eyes)\b|"
            r"\b(?:mouth|eyes|lips) (?:and \w+ )?(?:are |is )?(?:sore|blistered|peeling)\b(?:\W+\w+){0,8}?\W+rash\b|"
            r"\bblister\w* and peeling\b|\bpeeling and blister\w*|\b(?:whole|entire) body\b(?:\W+\w+){0,3}?\W+(?:red|"
            r"peeling|blister\w*)\b"
        ),
    ),
    Rule(
        "bleeding_wont_stop",
        "now",
        "bleeding that does not stop with pressure",
        "pyogenic_granuloma",
        _rx(
            r"\b(?:won'?t|doesn'?t|does not|will not|can'?t|cannot)\W+(?:\w+\W+){0,2}stop (?:the )?bleed\w*|"
            r"\bbleed\w* (?:won'?t|doesn'?t|does not|will not) stop|\bbleeding a lot\b"
        ),
        negatable=False,
    ),
    Rule(
        "severe_pain",
        "now",
        "pain much worse than the skin looks, or a very painful hot swelling",
        "cellulitis",
        _rx(
            r"\bpain\w*\b(?:\W+\w+){0,4}?\W+(?:much )?worse than (?:it|the skin) looks\b|\b(?:very|extremely|really) "
            r"painful,? (?:red,? )?(?:hot|swollen)\b"
        ),
    ),
    Rule(
        "baby_fever_rash",
        "now",
        "a baby with a rash and a fever, or blisters",
        "hand_foot_mouth",
        _rx(r"\b(?:newborn|baby|infant)\b(?:\W+\w+){0,10}?\W+(?:fever|temperature|blisters?|floppy)\b"),
    ),
    Rule(
        "baby_not_feeding",
        "now",
        "a baby or young child who is not feeding or drinking",
        "hand_foot_mouth",
        _rx(
            r"\b(?:newborn|baby|infant|toddler|child)\b(?:\W+\w+){0,10}?\W+(?:(?:is |has )?(?:not|isn'?t|won'?t|stopped|"
            r"refus\w*)(?: to)? (?:feed\w*|drink\w*)|off (?:his|her|their) feeds?)\b"
        ),
        negatable=False,
    ),
)

NEGATION_RE = re.compile(
    r"\b(?:no|not|never|without|isn'?t|hasn'?t|doesn'?t|don'?t|didn'?t|haven'?t|wasn'?t|nor|neither|stopped)\b"
    r"(?:\W+\w+){0,3}\W*$",
    re.IGNORECASE,
)
"""A negation close before a warning sign's last word ("it is not bleeding", "no fever and no redness")."""

SHORT_FIXES = {
    "mol": "mole",
    "moel": "mole",
    "moll": "mole",
    "bleds": "bleeds",
    "blled": "bled",
    "itchs": "itches",
    "ichy": "itchy",
    "iches": "itches",
    "wont": "won't",
    "doesnt": "doesn't",
    "dosent": "doesn't",
    "isnt": "isn't",
    "hasnt": "hasn't",
    "didnt": "didn't",
    "cant": "can't",
    "im": "i'm",
    "eye's": "eyes",
    "heel": "heal",
    "heeled": "healed",
    "heeling": "healing",
    "fevre": "fever",
    "rahs": "rash",
}
"""Misspellings too short for fuzzy matching to fix safely ("bed" must not become "bled")."""

KEY_WORDS = (
    "bleeding",
    "bleeds",
    "bleed",
    "blood",
    "bloody",
    "mole",
    "moles",
    "itching",
    "itchy",
    "itches",
    "changing",
    "changed",
    "growing",
    "bigger",
    "darker",
    "larger",
    "fever",
    "temperature",
    "shivering",
    "swollen",
    "swelling",
    "purple",
    "spots",
    "shingles",
    "blisters",
    "blister",
    "healed",
    "healing",
    "ulcer",
    "spreading",
    "redness",
    "breathing",
    "breathe",
    "peeling",
    "crusting",
    "crusty",
    "painful",
    "quickly",
    "rapidly",
    "eyelid",
    "freckle",
    "freckles",  # a known word, so the plural is not "corrected" to one freckle: many darkening in summer is normal
    "blanching",
    "petechiae",
    "wheezing",
    "fainting",
    "collapsed",
    "throat",
    "tongue",
    "newborn",
    "different",
    "colours",
    "colors",
    "appeared",
    "started",
    "streak",
    "fingernail",
    "toenail",
    "disappear",
    "pressure",
)
MIN_FUZZY_LENGTH = 5
REAL_WORDS_FILE = "redflag_real_words.txt"
FUZZY_CUTOFF = 0.8


@functools.cache
def real_words() -> frozenset[str]:
    """Common English words close to a key word: never "corrected" (``data/redflag_real_words.txt`` says why)."""
    from dermchat.paths import DATA_PACKAGE_DIR

    lines = (DATA_PACKAGE_DIR / REAL_WORDS_FILE).read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip() for line in lines if line.strip() and not line.startswith("#"))


@functools.lru_cache(maxsize=4096)
def _fix_word(word: str) -> str:
    lower = word.lower()
    if lower in SHORT_FIXES:
        return SHORT_FIXES[lower]
    if len(lower) < MIN_FUZZY_LENGTH or lower in KEY_WORDS or lower in real_words():
        return word
    close = difflib.get_close_matches(lower, KEY_WORDS, n=1, cutoff=FUZZY_CUTOFF)
    return close[0] if close else word


def normalise(text: str) -> str:
    """The text with curly apostrophes straightened and misspelt key words corrected ("bleading" -> "bleeding")."""
    text = (text or "").replace("’", "'").replace("‘", "'")
    return re.sub(r"[A-Za-z']+", lambda m: _fix_word(m.group(0)), text)


def _negated(text: str, start: int, end: int) -> bool:
    """Whether the matched warning sign is negated: a negation in the same clause just before its last word."""
    clause_start = max(text.rfind(sep, 0, end) for sep in ".;!?\n") + 1
    words = list(re.finditer(r"[\w']+", text[start:end]))
    last = start + words[-1].start() if words else start
    return bool(NEGATION_RE.search(text[max(clause_start, last - 40) : last]))


def screen(text: str) -> list[RedFlagHit]:
    """Warning signs in ``text`` (a user's message), most urgent first; empty when there are none."""
    fixed = normalise(text)
    hits: list[RedFlagHit] = []
    for rule in RULES:
        for match in rule.pattern.finditer(fixed):
            if rule.negatable and _negated(fixed, match.start(), match.end()):
                continue
            hits.append(
                RedFlagHit(
                    id=rule.id, urgency=rule.urgency, what=rule.what, source=rule.source, matched=match.group(0).strip()
                )
            )
            break
    return sorted(hits, key=lambda h: h.urgency != "now")


def notice(hits: list[RedFlagHit]) -> str | None:
    """One plain notice for the most urgent hits ("get medical help now" beats "see a doctor soon")."""
    if not hits:
        return None
    urgency = "now" if any(h.urgency == "now" for h in hits) else "soon"
    named = list(dict.fromkeys(h.what for h in hits if h.urgency == urgency))
    what = named[0] if len(named) == 1 else ", ".join(named[:-1]) + " and " + named[-1]
    return (NOW_NOTICE if urgency == "now" else SOON_NOTICE).format(what=what)
