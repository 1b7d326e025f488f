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

from dermchat.redflags.rules import RULES, Rule, Urgency
from dermchat.redflags.screen import NOW_NOTICE, SOON_NOTICE, notice, screen
from dermchat.redflags.spelling import normalise

__all__ = ["NOW_NOTICE", "RULES", "SOON_NOTICE", "Rule", "Urgency", "normalise", "notice", "screen"]
