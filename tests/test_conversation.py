"""The chat's memory without a browser: what a follow-up is about, when it is forgotten, and which answer a
rating belongs to (``dermchat.conversation``; the chat tab only keeps a ``Conversation`` in a ``gr.State``)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from dermchat.conversation import Conversation, explainer_history, patient_details
from dermchat.request import PatientDetails
from dermchat.results import Diagnosis, DifferentialEntry, Reference, TurnResult


def diagnosed(turn_id: str = "t1", image_ids: tuple[str, ...] = ()) -> TurnResult:
    diagnosis = Diagnosis(
        provider_id="fake",
        prediction_set=["melanoma"],
        differential=[DifferentialEntry(condition_id="melanoma", probability=1.0)],
    )
    references = [
        Reference(
            path=f"{i}.png",
            condition_id="melanoma",
            caption="",
            provenance="atlas",
            synthetic=False,
            provider_id="atlas",
            extra={"image_id": i},
        )
        for i in image_ids
    ]
    return TurnResult(turn_id=turn_id, diagnosis=diagnosis, references=references)


class FakeStore:
    """The feedback store's three calls, in memory."""

    def __init__(self) -> None:
        self.rows: dict[int, dict[str, Any]] = {}

    def add(self, fields: dict[str, Any], rating: str, comment: str | None = None) -> int:
        self.rows[len(self.rows) + 1] = {**fields, "rating": rating, "comment": comment}
        return len(self.rows)

    def update(self, row: int, *, rating: str | None = None, comment: str | None = None) -> bool:
        if row not in self.rows:
            return False
        self.rows[row].update({k: v for k, v in {"rating": rating, "comment": comment}.items() if v is not None})
        return True

    def delete(self, row: int) -> None:
        self.rows.pop(row, None)


def test_several_attachments_use_the_last_and_say_so_once() -> None:
    conversation = Conversation()
    conversation.receive("what is it?", ["a.jpg", "b.jpg"])
    assert conversation.take_upload() == "b.jpg" and conversation.take_upload() is None
    assert "b.jpg" in (conversation.take_note() or "") and conversation.take_note() is None
    conversation.receive("and this?", [])
    assert conversation.pending.text == "and this?" and conversation.pending.note is None


def test_an_unreadable_upload_forgets_the_earlier_diagnosis() -> None:
    conversation = Conversation()
    conversation.remember(diagnosed(), "first.png", 1)
    assert conversation.follow_up_subject() is not None
    conversation.receive("this one?", ["broken.jpg"])
    conversation.photo_refused("That file doesn't look like a photo.")
    assert conversation.take_refusal() == "That file doesn't look like a photo."
    assert conversation.follow_up_subject() is None and conversation.take_refusal() is None


def test_a_new_photo_without_a_diagnosis_makes_the_earlier_one_stale_and_waits_for_a_retake() -> None:
    conversation = Conversation()
    conversation.remember(diagnosed(), "first.png", 1)
    retake = TurnResult(turn_id="t2", status="retake")
    conversation.remember(retake, "blurred.png", 3)
    assert conversation.about is None and conversation.photo == "blurred.png" and conversation.awaiting_retake
    assert conversation.still_waiting_for_retake(None, TurnResult(turn_id="t3", status="no_image"))
    assert not conversation.still_waiting_for_retake("new.png", TurnResult(turn_id="t3", status="no_image"))


def test_a_follow_up_keeps_the_subject_and_its_reference_images() -> None:
    conversation = Conversation()
    first = diagnosed(image_ids=("ISIC_1", "ISIC_2"))
    conversation.remember(first, "first.png", 1)
    follow_up = TurnResult(turn_id="t2", status="followup", diagnosis=first.diagnosis)
    conversation.remember(follow_up, None, 3)
    assert conversation.about == first and conversation.last == follow_up
    assert conversation.with_subject_references(follow_up).references == first.references
    assert conversation.shown_reference_ids() == {"ISIC_1", "ISIC_2"}
    subject = conversation.follow_up_subject()
    assert subject == first and subject is not first, "the engine gets a copy it may change"


def test_a_copy_leaves_the_kept_conversation_as_it_was() -> None:
    kept = Conversation()
    changed = kept.copy()
    changed.remember(diagnosed(image_ids=("ISIC_1",)), "first.png", 1)
    assert kept == Conversation()


def test_a_rating_belongs_to_the_answer_after_its_step_notes_and_one_row_follows_it() -> None:
    conversation = Conversation()
    history = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "", "metadata": {}},
        {"role": "assistant", "content": "answer"},
    ]
    conversation.remember(diagnosed(), "first.png", 2)
    assert conversation.rated_answer(history, [1]) == "2" and conversation.rated_answer(history, 0) is None
    store = FakeStore()
    conversation.rate(store, "2", "dislike")
    conversation.rate(store, "2", "flag")
    assert list(store.rows.values()) == [
        {"result_id": "t1", "providers": {}, "tier": "", "rating": "flag", "comment": None}
    ]
    assert conversation.add_comment(store, "missed the bleeding") and not conversation.add_comment(store, "again")
    conversation.rate(store, "2", None)
    assert store.rows == {} and conversation.commenting_on is None


def test_the_explainer_reads_the_last_ten_text_messages() -> None:
    messages = [{"role": "user", "content": {"path": "photo.png"}}] + [
        {"role": "user", "content": f"message {i}"} for i in range(12)
    ]
    history = explainer_history(messages)
    assert len(history) == 10 and history[-1] == {"role": "user", "content": "message 11"}


def test_patient_details_leave_out_what_was_not_given() -> None:
    assert patient_details(None, "not given", " ") == PatientDetails(age=None, sex=None, body_site=None)
    assert patient_details(42.0, "female", " back ") == PatientDetails(age=42, sex="female", body_site="back")


def test_the_conversation_and_the_renderer_load_without_gradio() -> None:
    """The core never imports gradio: another front end (or the CLI) gets the same memory and the same words."""
    check = "import sys, dermchat.conversation, dermchat.render, dermchat.cli; assert 'gradio' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", check], capture_output=True, timeout=120).returncode == 0
