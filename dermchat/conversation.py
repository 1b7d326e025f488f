"""What one chat conversation remembers between turns, typed: the chat tab keeps a ``Conversation`` per browser
session (in a ``gr.State``) and asks it what to send and what to show.

Why in the core: which result a follow-up is about, when to forget it (a new photo, an unreadable upload),
whether a question in between still waits for a retake, which reference images were shown already and which
answer a rating belongs to are rules about the conversation, not about the page. Kept here, they are tested
without a browser and any front end gets them the same. No gradio here: the page's message list (``history``,
dicts with ``role`` and ``content``) comes in as plain data.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dermchat.classifier.patient_info import normalise_sex
from dermchat.feedback.record import feedback_fields
from dermchat.intake import choose_image
from dermchat.request import PatientDetails
from dermchat.results import TurnResult

if TYPE_CHECKING:
    from dermchat.feedback.store import FeedbackStore

EXPLAINER_HISTORY = 10
"""Text messages the explainer reads back: enough for "and is it contagious?" to find its subject."""


@dataclass
class PendingMessage:
    """What the user just sent, between showing the words (at once) and running the turn (with the photo read)."""

    text: str = ""
    upload: str | None = None  # the attachment as uploaded, not yet stripped of its metadata
    note: str | None = None  # several attachments: which one is used
    photo: str | None = None  # the stripped copy of ``upload``
    refusal: str | None = None  # why ``upload`` can't be used, in words for the user


@dataclass
class Conversation:
    """One conversation's memory; an event works on a ``copy()`` and hands it back to be kept."""

    about: TurnResult | None = None  # the last result with a diagnosis: follow-ups talk about it
    last: TurnResult | None = None  # the very last result (written again when the audience switches)
    last_answer_at: int | None = None  # where that answer sits in the chat
    photo: str | None = None  # stripped copy of the last photo, for "continue anyway"
    awaiting_retake: bool = False  # the last photo waits for a retake or "continue anyway"
    pending: PendingMessage = field(default_factory=PendingMessage)
    seen_references: list[str] = field(default_factory=list)  # image ids shown already: not shown again
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)  # chat index -> what feedback on it records
    ratings: dict[str, int] = field(default_factory=dict)  # chat index -> its feedback row (a new rating updates it)
    commenting_on: str | None = None  # the answer the comment box is about

    def copy(self) -> Conversation:
        """A copy the event may change: the kept one stays as it was until the event returns the copy."""
        return copy.deepcopy(self)

    # -- a message arrives -----------------------------------------------------------------------------------
    def receive(self, text: str, attachments: list[str]) -> None:
        """Note what was sent; the photo is only chosen here (stripping it takes seconds, shown as a step)."""
        upload, note = choose_image(attachments)
        self.pending = PendingMessage(text=text, upload=upload, note=note if upload else None)

    def take_upload(self) -> str | None:
        """The attachment still to be stripped (once)."""
        upload, self.pending.upload = self.pending.upload, None
        return upload

    def photo_read(self, clean: str) -> None:
        self.pending.photo = clean

    def photo_refused(self, reason: str | None) -> None:
        self.pending.refusal = reason

    def take_refusal(self) -> str | None:
        """Why the new upload can't be used; the user moved on to another photo, so the earlier one's diagnosis
        is forgotten too (its side panel and follow-ups are not about the spot now discussed)."""
        reason, self.pending.refusal = self.pending.refusal, None
        if reason:
            self.forget_diagnosis()
        return reason

    def take_note(self) -> str | None:
        note, self.pending.note = self.pending.note, None
        return note

    # -- what the turn is about ------------------------------------------------------------------------------
    def follow_up_subject(self) -> TurnResult | None:
        """The result a question without a photo is about (a copy: the engine builds the new result from it)."""
        return self.about.model_copy(deep=True) if self.about is not None else None

    def shown_reference_ids(self) -> set[str]:
        return set(self.seen_references)

    def still_waiting_for_retake(self, image: str | None, result: TurnResult) -> bool:
        """A question after a photo that needs a retake: "I don't have a photo yet" would deny the photo sent."""
        return image is None and self.awaiting_retake and result.status == "no_image"

    # -- a result arrives --------------------------------------------------------------------------------------
    def remember(self, result: TurnResult, image: str | None, answer_at: int) -> None:
        """Keep ``result`` (shown at chat index ``answer_at``) as the last answer, and as the subject of
        follow-ups when it has a diagnosis; a new photo without one makes the earlier diagnosis stale."""
        self.last = result
        self.last_answer_at = answer_at
        self.answers[str(answer_at)] = feedback_fields(result)
        if result.diagnosis is not None and result.status != "followup":
            self.about = result
        elif image:  # a new photo that got no diagnosis (retake, not skin): "is it cancer?" is about *that* one
            self.forget_diagnosis()
        if image:
            self.photo = image
            self.awaiting_retake = result.status == "retake"
        shown = [str(ref.extra["image_id"]) for ref in result.references if ref.extra.get("image_id")]
        self.seen_references = list(dict.fromkeys([*self.seen_references, *shown]))

    def forget_diagnosis(self) -> None:
        """Follow-ups must not answer about an earlier photo once the user has sent another one."""
        self.about = None
        self.awaiting_retake = False

    def with_subject_references(self, result: TurnResult) -> TurnResult:
        """What the side panel shows: a follow-up keeps the reference images of the result it is about
        (a follow-up finds none of its own; an empty gallery and "0 real / 0 synthetic" would mislead)."""
        if result.status == "followup" and not result.references and self.about is not None:
            return result.model_copy(update={"references": self.about.references})
        return result

    # -- the audience switches ---------------------------------------------------------------------------------
    def written_for_another_audience(self, audience: str) -> bool:
        """The last answer's explanation (the one part written for one reader) is not in ``audience``'s words."""
        return self.last is not None and self.last.explanation is not None and self.last.audience != audience

    def rewrite_subject(self) -> TurnResult | None:
        """The result an explanation written again is about: the last one when it has its own diagnosis."""
        if self.last is not None and self.last.status != "followup" and self.last.diagnosis is not None:
            return self.last
        return self.about

    def replace_last(self, result: TurnResult) -> None:
        """The last answer written again (same photo, same diagnosis, other words)."""
        self.last = result
        if result.diagnosis is not None and result.status != "followup":
            self.about = result

    # -- ratings ------------------------------------------------------------------------------------------------
    def rate(self, store: FeedbackStore, answer: str, rating: str | None) -> None:
        """Store a thumbs up / down or a flag for ``answer``: one row per answer, a new rating replaces it, a
        rating taken back (``None``) deletes it. A stored rating opens the optional comment on that answer."""
        row = self.ratings.get(answer)
        if rating is None:
            if row is not None:
                store.delete(row)
                del self.ratings[answer]
            self.commenting_on = None
            return
        if row is None or not store.update(row, rating=rating):
            self.ratings[answer] = store.add(self.answers[answer], rating)
        self.commenting_on = answer

    def add_comment(self, store: FeedbackStore, comment: str) -> bool:
        """Attach ``comment`` to the answer rated last; False when no rating waits for one."""
        row = self.ratings.get(self.commenting_on or "")
        if row is None:
            return False
        store.update(row, comment=comment)
        self.commenting_on = None
        return True

    def rated_answer(self, history: list[dict[str, Any]], index: Any) -> str | None:
        """The answer a like button belongs to. Gradio groups consecutive assistant messages (a turn's step
        notes and its answer) under one set of buttons and reports the group's *first* message, so this is the
        first answer at or after it with no user message in between."""
        position = int(index[0] if isinstance(index, (list, tuple)) else index)
        for at in range(position, len(history or [])):
            if str(at) in self.answers:
                return str(at)
            if history[at].get("role") != "assistant":
                return None
        return None


def explainer_history(messages: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The last text messages of the chat (photos left out), as the explainer reads them."""
    texts = [
        {"role": m.get("role", ""), "content": m["content"]} for m in messages if isinstance(m.get("content"), str)
    ]
    return texts[-EXPLAINER_HISTORY:]


def patient_details(age: float | str | None, sex: str | None, site: str | None) -> PatientDetails:
    """The optional details about the spot as the turn's request carries them, the same from the chat and the API:
    blanks and 'not given' are left out, so the model only ever sees what the user chose to tell."""
    return PatientDetails(age=_years(age), sex=normalise_sex(sex), body_site=(site or "").strip() or None)


def _years(age: float | str | None) -> float | None:
    """Whole years stay whole, so a notice about an unusable age quotes what was typed ('500', not '500.0')."""
    if age is None or age == "":
        return None
    years = float(age)
    return int(years) if years.is_integer() else years
