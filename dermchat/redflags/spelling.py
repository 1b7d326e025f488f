"""Common misspellings of the rules' key words corrected before screening ("bleading" -> "bleeding").

Why: patients type fast, on phones, often not in their first language. Only words close to a key word are changed,
and never a real English word (``data/redflag_real_words.txt``: "never" once became "fever").
"""

from __future__ import annotations

import difflib
import functools
import re

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
