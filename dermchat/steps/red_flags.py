"""Warning signs and language in the user's own words: screened before any model runs, applied to the triage
after the diagnosis and again at the end of every turn (also one stopped early)."""

from __future__ import annotations

from dermchat import language, redflags, safety
from dermchat.steps.turn import Turn


def screen_message(turn: Turn) -> None:
    """Red flags in the user's words (kept from earlier turns of the chat) and a notice when the message is not
    in English; both hold whatever the photo shows, so they run before any step."""
    result = turn.result
    earlier = turn.request.previous.red_flags if turn.request.previous is not None else []
    hits = {hit.id: hit for hit in [*earlier, *redflags.screen(result.question)]}
    result.red_flags = sorted(hits.values(), key=lambda h: h.urgency != "now")
    code = language.detect(result.question)
    if code:
        result.language = code
        result.notices.append(language.notice(code))


def apply_red_flags(turn: Turn) -> None:
    """Warning signs the user described make the tier urgent, whatever the photo says (idempotent)."""
    turn.result.triage = safety.with_red_flags(turn.result.triage, turn.result.red_flags)
