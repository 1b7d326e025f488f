"""What one piece of feedback holds, built from the answer it is about."""

from __future__ import annotations

from typing import Any

from dermchat.results import TurnResult

RATINGS = ("up", "down", "flag")
"""Thumbs up, thumbs down, and "flag as wrong or unsafe" (a stronger signal than a thumbs down)."""
FLAG_LABEL = "Flag as wrong or unsafe"
MAX_COMMENT_CHARS = 2000


class FeedbackError(ValueError):
    """Feedback that cannot be stored (an unknown rating, an over-long comment); the message says why."""


def feedback_fields(result: TurnResult) -> dict[str, Any]:
    """The answer's identity as feedback stores it: result id, provider ids per capability and triage tier.

    Why only these: a researcher needs to know which providers produced a rated answer and how urgent it was,
    and nothing else — the photo, the question and the user's identity stay out of the feedback store.
    """
    providers: dict[str, str | list[str]] = {}
    for capability, ref in result.providers.items():
        providers[capability] = [r.id for r in ref] if isinstance(ref, list) else ref.id
    return {
        "result_id": result.turn_id,
        "providers": providers,
        "tier": result.triage.tier if result.triage is not None else "",
    }


def rating_from_like(liked: Any) -> str | None:
    """Gradio's like value as a rating: True -> up, False -> down, the flag option -> flag, None -> withdrawn."""
    if liked is True:
        return "up"
    if liked is False:
        return "down"
    if isinstance(liked, str) and liked.strip().lower() in {FLAG_LABEL.lower(), "flag"}:
        return "flag"
    if liked in (None, ""):
        return None
    raise FeedbackError(f"unknown feedback value {liked!r} (expected like, dislike or {FLAG_LABEL!r})")


def clean_comment(comment: str | None) -> str:
    """A comment as stored: trimmed, NUL-free, at most ``MAX_COMMENT_CHARS``."""
    text = (comment or "").replace("\x00", "").strip()
    if len(text) > MAX_COMMENT_CHARS:
        raise FeedbackError(f"please keep the comment under {MAX_COMMENT_CHARS} characters")
    return text


def check_rating(rating: str) -> str:
    if rating not in RATINGS:
        raise FeedbackError(f"unknown rating {rating!r} (expected one of: {', '.join(RATINGS)})")
    return rating
