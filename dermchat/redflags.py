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
_ONE_OF_THEM = r"one of (?:them|those|these|my moles|the moles)"  # "all my moles are fine but one of them itches"
_BABY = (  # "baby", "newborn", "my 4 month old", "a six-week-old"
    r"(?:newborn|baby|infant|(?:\d+|one|two|three|four|five|six|seven|eight|nine|ten|eleven)[- ](?:weeks?|months?)[- ]old)"
)
_FEVER = (  # a fever in words or in degrees: "shivery", "a temp of 38.9", "39 degrees", "101F" (not "hay fever")
    r"(?:(?<!hay )fever\w*|high temperature|shiver\w*|chills|rigors|(?:3[89]|40)(?:[.,]\d)? ?(?:°|degrees|c\b)|"
    r"10[0-4](?:[.,]\d)? ?(?:°|degrees|f\b)|temp(?:erature)? (?:of |is |was |at |over |above |about |around )+(?:3[89]|40|10[0-4]))"
)
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
            rf"\b{_LESION}\b{_WORDS_BETWEEN}(?:bleed\w*|bled|blood\w*)\b|\b(?:bleed\w*|bloody)\b(?! hearts?\b){_WORDS_BETWEEN}"
            rf"{_LESION}\b|\b(?:started|keeps?|began) (?:to )?bleed\w*|"
            # blood found on clothes or bedding, then traced to the spot: "blood on my pillow from the mole"
            rf"\bblood (?:on|over|all over|onto) (?:\w+\W+){{1,12}}?{_LESION}\b"
        ),
    ),
    Rule(
        "changing_mole",
        "soon",
        "a mole or spot that is changing",
        "melanocytic_nevus",
        _rx(
            rf"\b(?:mole|moles|freckle|spot|mark|birthmark|{_ONE_OF_THEM})\b{_WORDS_BETWEEN}(?:chang\w*|grow\w*|grew|getting (?:bigger|"
            rf"darker|larger|raised)|got (?:bigger|darker|larger)|bigger|darker|larger|spread\w*|new colou?rs?|"
            rf"raised now|different (?:colou?r|shape)|{_TURNED_DARK}|twice (?:the|its) size|doubled|(?:now|become|became|"
            rf"gone|got|getting) (?:\w+ )?(?:raised|lumpy|bumpy)|(?:irregular|ragged|jagged|uneven|blurr\w*|fuzzy) "
            rf"(?:edges?|borders?|outline))|\b(?:edges?|borders?|outline) of (?:my |the |this |that )?(?:mole|spot|freckle)\b"
            rf"(?:\W+\w+){{0,3}}?\W+(?:irregular|ragged|jagged|uneven|blurr\w*|fuzzy|notched)\b|"
            r"\b(?:changing|changed|growing|evolving) (?:mole|spot|freckle)|"
            # "it's twice as big as in my holiday photos, the mole on my calf I mean"
            r"\b(?:twice|double|three times) as (?:big|large|wide|dark)\b(?:\W+\w+){0,12}?\W+(?:mole|freckle|spot|birthmark)\b"
        ),
    ),
    Rule(
        "itchy_mole",
        "soon",
        "a mole that itches, crusts or hurts",
        "melanoma",
        _rx(
            rf"\b(?:mole|moles|freckle|birthmark|{_ONE_OF_THEM})\b{_WORDS_BETWEEN}(?:itch\w*|crust\w*|scab\w*|ooz\w*)\b|"
            # pain only close to the lesion word: sore muscles or a sore throat later in the message are not the mole
            rf"\b(?:mole|moles|freckle|birthmark|{_ONE_OF_THEM})\b(?:\W+\w+){{0,4}}?\W+(?:hurts?|hurting|painful|tender|sore)\b|"
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
            r"\bnew (?:dark |black |brown )?(?:mole|moles|freckle)\b|\bnew (?:dark|black|dark brown|brown) (?:spot|mark)\b|"
            r"\b(?:mole|dark spot)s? (?:that )?(?:just |recently )?(?:appeared|came up|showed up)\b"
        ),
    ),
    Rule(
        "new_mole_story",  # the same sign told with a negation in it, so a negation cannot cancel it
        "soon",
        "a new mole in adult life",
        "melanocytic_nevus",
        _rx(
            r"\b(?:mole|moles|spot|mark|freckle)\b(?:\W+\w+){0,12}?\W+(?:(?:wasn'?t|was not|weren'?t|were not|never used to be) "
            r"there|(?:didn'?t|did not) have (?:it|that|this|one)) (?:before|last year|a year ago|last (?:summer|winter|spring|"
            r"autumn|month)|a few months ago|until recently|(?:\d+|a|two|three|six) (?:months?|years?) ago)\b"
        ),
        negatable=False,
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
            r"\b(?:lump|bump|growth|nodule|spot|mole)s?\b(?:\W+\w+){0,8}?\W+(?:grow\w*|grew|getting bigger|got bigger|"
            r"doubled)\b(?:\W+\w+){0,3}?\W*(?:(?:really |very |so )?(?:fast|quickly|rapidly)|in (?:about |around |under |"
            r"less than |just |only )?(?:a few|a couple of|\d+|two|three|four|five|six) (?:days|weeks)|every (?:day|week))\b|"
            r"\b(?:fast|rapidly|quickly)[- ]growing\b|"
            # "was pea sized last month and now more like a marble"
            r"\b(?:lump|bump|growth|nodule|spot|mole)s?\b(?:\W+\w+){0,8}?\W+(?:was|used to be)\b(?:\W+\w+){0,6}?\W+(?:and |but )?"
            r"now (?:\w+ ){0,2}(?:bigger|larger|wider|more like|the size of|as big as)\b"
        ),
    ),
    Rule(
        "nail_streak",
        "soon",
        "a dark line in a nail",
        "melanoma",
        _rx(
            r"\b(?:dark|black|brown) (?:line|streak|stripe|band)\b(?:\W+\w+){0,8}?\W+(?:nail|nails|fingernail|toenail|"
            r"thumbnail|thumb nail)"
        ),
    ),
    Rule(
        "fever_spreading_red",
        "now",
        "fever with red, hot or spreading skin",
        "cellulitis",
        _rx(
            # forwards a bare "temperature" or "temp" will do ("a temperature and the area is red"), backwards it
            # needs a figure ("red ... and her temperature is 38.5", not "red, what temperature should the bath be")
            rf"\b(?:{_FEVER}|temperature|temp)(?:\W+\w+){{0,12}}?\W+(?:red\w*|hot|swell\w*|swollen|spread\w*|rash|blister\w*|"
            rf"pus|sores?)\b|\b(?:red\w*|hot|swollen|spread\w*|rash|blister\w*|pus|sores?)\b(?:\W+\w+){{0,12}}?\W+{_FEVER}"
        ),
    ),
    Rule(
        "spreading_redness",
        "now",
        "redness that is spreading fast",
        "cellulitis",
        _rx(
            r"\b(?:red\w*|swelling|infection|rash)\b(?:\W+\w+){0,4}?\W+spread\w* (?:(?:really|very|so) )?(?:fast|quickly|"
            r"rapidly|up|every hour|by the hour)|\b(?:red (?:line|streak)s?)\b|\b(?:red\w*|swelling|infection)\b(?:\W+\w+){0,6}?\W+"
            r"(?:getting (?:bigger|larger|wider)|growing|spreading) (?:(?:really|very|so) )?(?:by the hour|every hour|fast|"
            r"quickly|rapidly)\b|"
            # the pen-line check: "I drew round it with a pen at lunch and it's way past the line now"
            r"\b(?:drew|drawn|marked|traced|outlined)\b(?:\W+\w+){0,12}?\W+(?:past|beyond|outside|over) (?:the |my |that )?"
            r"(?:pen |marker )?(?:line|lines|mark|marks|outline)\b"
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
            r"{0,20}?\W+(?:eye|vision|sight)\b(?:\W+\w+){0,3}?\W+(?:hurts?|painful|red|sore|blurr\w*|chang\w*)|"
            # a rash spreading from the forehead down to the tip of the nose is near the eye
            r"\b(?:shingles|blisters?|blistery|rash|sores?)\b(?:\W+\w+){0,16}?\W+(?:tip of (?:my |the |his |her )?nose)\b"
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
            r"\bbleed\w*\b(?:\W+\w+){0,12}?\W+(?:won'?t|doesn'?t|does not|will not) stop\b|\bbleeding a lot\b|"
            # ten minutes or more ("been bleeding for 30 mins")
            r"\bbleed\w* for (?:over |more than |about |nearly |almost |at least )?(?:(?:[1-9]\d\d?|ten|fifteen|twenty|thirty|"
            r"forty|half an) min\w*|(?:an|\d+|one|two|a few|several) hours?)\b"
        ),
        negatable=False,
    ),
    Rule(
        "severe_pain",
        "now",
        "pain much worse than the skin looks, or a very painful hot swelling",
        "cellulitis",
        _rx(
            r"\b(?:pain\w*|hurts?|hurting)\b(?:\W+\w+){0,4}?\W+(?:(?:s+o+|much|way|a lot|far|loads) )*(?:more|worse) than "
            r"(?:it|the skin|they|this|that) looks?\b|\b(?:very|extremely|really) painful,? (?:red,? )?(?:hot|swollen)\b|"
            # "just a bit of redness on the skin but the pain is unbearable"
            r"\b(?:red\w*|swollen|swelling|hot)\b(?:\W+\w+){0,12}?\W+(?:unbearable|excruciating|agonis\w*|agoniz\w*|agony)\b|"
            r"\b(?:unbearable|excruciating|agonis\w*|agoniz\w*|agony)\b(?:\W+\w+){0,12}?\W+(?:red\w*|swollen|swelling|hot)\b"
        ),
    ),
    Rule(
        "baby_fever_rash",
        "now",
        "a baby with a rash and a fever, or blisters",
        "hand_foot_mouth",
        _rx(rf"\b{_BABY}\b(?:\W+\w+){{0,10}}?\W+(?:fever|temperature|temp|blisters?|floppy)\b"),
    ),
    Rule(
        "baby_not_feeding",
        "now",
        "a baby or young child who is not feeding or drinking",
        "hand_foot_mouth",
        _rx(
            rf"\b(?:{_BABY}|toddler|child)\b(?:\W+\w+){{0,10}}?\W+(?:(?:is |has )?(?:not|isn'?t|won'?t|stopped|"
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


_QUESTION_START_RE = re.compile(
    r"^\W*(?:what|what'?s|whats|is|are|can|could|do|does|how|why|when|which|will|would)\b", re.IGNORECASE
)
_ABOUT_SOMEONE_RE = re.compile(  # "I", "me", "mine", "we"; or "my/his/the ... mole": someone's own lesion
    r"\b(?:i|i'm|i've|im|ive|me|mine|we|us)\b|\b(?:my|our|his|her|their|this|that|the)\s+(?:\w+\s+){0,2}"
    r"(?:mole|moles|spot|spots|freckle|mark|lesion|growth|lump|bump|patch|birthmark|sore|nail|skin)\b",
    re.IGNORECASE,
)
_SETTLED_SINCE_RE = re.compile(  # "... two years ago and has been fine since"
    r"^(?:\W+\w+){0,10}?\W+(?:years?|months?) ago\b(?:\W+\w+){0,6}?\W+(?:fine|ok|okay|normal|no (?:problems?|issues?|"
    r"change\w*)|nothing)(?: ever)? since\b",
    re.IGNORECASE,
)
_EVEN_TAN_RE = re.compile(r"\ball (?:of )?(?:my|his|her|their|our) (?:moles|freckles)\b", re.IGNORECASE)
_SUN_RE = re.compile(r"\b(?:tan|tanned|tanning|sun|sunny|summer|holiday|beach)\b", re.IGNORECASE)


def _not_a_report(rule: Rule, text: str, match: re.Match[str]) -> bool:
    """Whether a "see a doctor soon" sign is not being reported about a lesion now. Three cases, each narrow: a
    question asked in general ("what does it mean if a mole bleeds?", with no "I", "mine" or "my mole"), a sign
    settled long ago ("it bled once two years ago and has been fine since"), and all of someone's moles darkening
    evenly with a tan. "Get help now" signs are never set aside."""
    if rule.urgency == "now":
        return False
    if "?" in text and _QUESTION_START_RE.search(text) and not _ABOUT_SOMEONE_RE.search(text):
        return True
    if _SETTLED_SINCE_RE.search(text[match.end() :]):
        return True
    even = _EVEN_TAN_RE.search(text)  # the change matched must be the one said of all the moles
    return rule.id == "changing_mole" and bool(
        even and even.start() <= match.start() < even.end() and _SUN_RE.search(text)
    )


def screen(text: str) -> list[RedFlagHit]:
    """Warning signs in ``text`` (a user's message), most urgent first; empty when there are none."""
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
    return sorted(hits, key=lambda h: h.urgency != "now")


def notice(hits: list[RedFlagHit]) -> str | None:
    """One plain notice for the most urgent hits ("get medical help now" beats "see a doctor soon")."""
    if not hits:
        return None
    urgency = "now" if any(h.urgency == "now" for h in hits) else "soon"
    named = list(dict.fromkeys(h.what for h in hits if h.urgency == urgency))
    what = named[0] if len(named) == 1 else ", ".join(named[:-1]) + " and " + named[-1]
    return (NOW_NOTICE if urgency == "now" else SOON_NOTICE).format(what=what)
