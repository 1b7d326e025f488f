"""The chat tab's event handlers driven as the browser drives them (add_message, then respond), on the real app.

Faster than a browser and exact about what each event sends back: which answer, which side panel, which button.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import gradio as gr
import pytest
from app_fixtures import live_app  # noqa: F401 - fixture
from PIL import Image, ImageFilter

from dermchat.conversation import Conversation
from dermchat.render import reference_caption
from dermchat.request import TurnRequest
from dermchat.results import Reference
from dermchat.vocabulary import get_vocabulary
from dermchat_ui.chat import ChatTab

QUESTION = "Should I worry about this?"


@pytest.fixture(scope="module")
def tab(live_app) -> ChatTab:
    _, app = live_app
    with gr.Blocks():
        chat = ChatTab(app)
        chat.build()
    return chat


def send(
    tab: ChatTab, history: list, state: Conversation, text: str, files: tuple[str, ...] = (), audience: str = "patient"
) -> tuple[list, Conversation, dict[Any, Any]]:
    """One chat turn: (history, state, the merged panel updates) after the last streamed update."""
    history, _, state = tab.add_message(history, {"text": text, "files": list(files)}, state)
    final: dict[Any, Any] = {}
    for update in tab.respond(history, state, audience):
        final.update(update)
    return final[tab.chatbot], final[tab.state], final


def visible(update: Any) -> bool:
    return bool(update.visible if isinstance(update, gr.components.Component) else update["visible"])


def last_answer(history: list) -> str:
    return str(history[-1]["content"])


@pytest.fixture()
def blurred(ham_dir: Path, tmp_path: Path) -> str:
    """A blurred melanoma photo: the quality check asks for a retake."""
    path = tmp_path / "blurred.jpg"
    Image.open(ham_dir / "images" / "ISIC_0027190.jpg").filter(ImageFilter.GaussianBlur(6)).save(path)
    return str(path)


def test_the_words_show_at_once_and_the_photo_is_read_as_a_visible_step(
    tab: ChatTab, ham_image: Path, tmp_path: Path
) -> None:
    from dermchat_ui.uploads import gradio_cache_dir

    data = ham_image.read_bytes()  # Gradio's cached copy, at <cache>/<sha256>/<name>: the stripping deletes it
    upload = gradio_cache_dir() / hashlib.sha256(b"test" + data).hexdigest() / "upload.jpg"
    upload.parent.mkdir(parents=True, exist_ok=True)
    upload.write_bytes(data)
    history, _, state = tab.add_message([], {"text": QUESTION, "files": [str(upload)]}, Conversation())
    assert history == [{"role": "user", "content": QUESTION}], "the message waited for the photo to be stripped"
    updates = tab.respond(history, state, "patient")
    first = next(updates)[tab.chatbot]
    assert first[-1]["metadata"] == {"title": "Reading your photo", "status": "pending"}
    final = list(updates)[-1][tab.chatbot]
    photo, words = final[0]["content"], final[1]["content"]
    assert Path(photo["path"]).suffix == ".png" and words == QUESTION  # the stripped copy, above the words
    assert not upload.exists()


def test_a_question_after_a_retake_is_not_answered_about_the_earlier_photo(
    tab: ChatTab, ham_image: Path, blurred: str
) -> None:
    history, state, _ = send(tab, [], Conversation(), QUESTION, (str(ham_image),))
    assert state.about.triage.tier == "reassure"
    history, state, panel = send(tab, history, state, "And this other spot?", (blurred,))
    assert state.last.status == "retake" and visible(panel[tab.continue_btn])
    history, state, panel = send(tab, history, state, "Is it cancer?")
    assert state.last.status != "followup", "answered about the earlier (harmless-looking) photo"
    assert panel[tab.triage] == "", "the side panel still shows the earlier photo's triage"
    assert "wasn't clear enough" in last_answer(history) and "don't have a photo" not in last_answer(history)
    assert visible(panel[tab.continue_btn]), "a question in between took away 'Continue anyway'"


def test_continue_anyway_hides_itself_while_its_turn_runs(tab: ChatTab, blurred: str) -> None:
    """A second click during the turn would start a second turn over the same conversation state."""
    history, state, panel = send(tab, [], Conversation(), QUESTION, (blurred,))
    assert state.last.status == "retake" and visible(panel[tab.continue_btn])
    updates = list(tab.continue_anyway(history, state, "patient"))
    assert not visible(updates[0][tab.continue_btn])
    final = {k: v for update in updates for k, v in update.items()}
    assert final[tab.state].last.status not in {"retake", "no_image"}
    assert not visible(final[tab.continue_btn])


def test_an_unreadable_upload_clears_the_earlier_photo(tab: ChatTab, ham_image: Path, tmp_path: Path) -> None:
    history, state, _ = send(tab, [], Conversation(), QUESTION, (str(ham_image),))
    broken = tmp_path / "spot.jpg"
    broken.write_text("not a photo")
    history, state, panel = send(tab, history, state, "What about this one?", (str(broken),))
    assert "doesn't look like a photo" in last_answer(history)
    assert panel[tab.triage] == "" and panel[tab.gallery] == []
    history, state, _ = send(tab, history, state, "Is it cancer?")
    assert state.last.status != "followup"


def test_a_follow_up_keeps_the_reference_images(tab: ChatTab, ham_image: Path) -> None:
    history, state, panel = send(tab, [], Conversation(), QUESTION, (str(ham_image),))
    shown = panel[tab.gallery]
    assert shown and "0 real / 0 synthetic" not in panel[tab.contrast]
    history, state, panel = send(tab, history, state, "What does the prediction set mean?")
    assert state.last.status == "followup"
    assert panel[tab.gallery] == shown
    assert "0 real / 0 synthetic" not in panel[tab.contrast]


def test_switching_audience_rewrites_the_explanation_for_the_new_reader(tab: ChatTab, ham_dir: Path) -> None:
    image = ham_dir / "images" / "ISIC_0027190.jpg"  # a melanoma: the clinician text talks of referral pathways
    history, state, _ = send(tab, [], Conversation(), QUESTION, (str(image),), audience="clinician")
    clinician_text = state.last.explanation.text
    patient_text = tab.app.run_turn_sync(
        TurnRequest(image=str(image), question=QUESTION, audience="patient")
    ).explanation.text
    assert clinician_text != patient_text
    update = tab.rerender(history, state, "patient")
    answer = update[tab.chatbot][state.last_answer_at]["content"]
    assert patient_text in answer and clinician_text not in answer
    assert update[tab.state].last.audience == "patient"


def test_switching_audience_before_any_answer_updates_nothing(tab: ChatTab) -> None:
    update = tab.rerender([], Conversation(), "clinician")
    assert update and all(isinstance(key, gr.components.Component) for key in update)


def test_a_reference_caption_names_the_condition_in_full_then_real_or_synthetic() -> None:
    """A grid that cuts captions showed "Real imag…" for every image, and "Real image: Mela…" could be melanoma
    or a mole: the condition's full name comes first, then whether the image is real or synthetic."""
    long_name = "Basal cell carcinoma (a common, slow-growing skin cancer)"
    synthetic = Reference(
        path="x.png",
        condition_id="basal_cell_carcinoma",
        provenance="model, seed 1",
        caption=f"{long_name} — synthetic",
        synthetic=True,
        provider_id="sd-diffusion",
    )
    real = synthetic.model_copy(update={"synthetic": False, "caption": f"{long_name} — real image"})
    mole = real.model_copy(update={"condition_id": "melanocytic_nevus"})
    vocab = get_vocabulary()
    assert reference_caption(synthetic).startswith(vocab.get("basal_cell_carcinoma").patient_name + " — SYNTHETIC")
    assert reference_caption(real) == vocab.get("basal_cell_carcinoma").patient_name + " — real photo"
    assert reference_caption(mole).startswith(vocab.get("melanocytic_nevus").patient_name)
    assert reference_caption(mole, audience="clinician").startswith(vocab.get("melanocytic_nevus").clinician_name)


def test_rating_an_answer_stores_one_row_that_follows_the_latest_rating(
    ham_image: Path, tmp_path: Path, live_app
) -> None:
    """Gradio reports the first message of the rated group (a step note); the rating belongs to its answer."""
    from dermchat.feedback.store import FeedbackStore

    _, app = live_app
    store = FeedbackStore(tmp_path / "feedback.sqlite")
    with gr.Blocks():
        tab = ChatTab(app, feedback=store)
        tab.build()
    history, state, _ = send(tab, [], Conversation(), QUESTION, (str(ham_image),))
    first_note = next(i for i, m in enumerate(history) if m["role"] == "assistant")

    def like(value: Any, index: int = first_note) -> tuple[Conversation, Any, Any]:
        return tab.on_like(history, state, gr.LikeData(tab.chatbot, {"index": index, "value": "", "liked": value}))

    state, group, _ = like(False)
    assert group.visible  # the optional comment box opens
    state, _, _ = like("Flag as wrong or unsafe")
    state, _, _ = tab.on_comment("It missed the bleeding", state)
    [row] = store.rows()
    result = state.last
    assert (row["result_id"], row["rating"], row["comment"]) == (result.turn_id, "flag", "It missed the bleeding")
    assert row["tier"] == result.triage.tier and row["providers"]["diagnoser"] == result.providers["diagnoser"].id
    state, group, _ = like("")  # the flag taken back
    assert store.rows() == [] and not group.visible
    _, group, _ = like(True, index=0)  # the user's own photo: not an answer, nothing stored
    assert store.rows() == [] and not group.visible


def test_compare_with_an_earlier_photo_says_the_spot_grew(tab: ChatTab, ham_image: Path, tmp_path: Path) -> None:
    import numpy as np

    from dermchat.morphology.bench import grow
    from dermchat.morphology.outline import lesion_outline

    rgb = np.asarray(Image.open(ham_image).convert("RGB"))
    upload = tmp_path / "earlier.jpg"  # stands for Gradio's cached copy of the earlier photo
    Image.fromarray(rgb).save(upload, quality=95)
    earlier = tab.strip_earlier(str(upload))
    assert earlier is not None and earlier.endswith(".png")  # the stripped copy, not the upload
    later = tmp_path / "later.png"
    Image.fromarray(grow(rgb, lesion_outline(rgb))).save(later)
    history, _, state = tab.add_message([], {"text": QUESTION, "files": [str(later)]}, Conversation())
    final: dict[Any, Any] = {}
    for update in tab.respond(history, state, "patient", earlier=earlier):
        final.update(update)
    answer = last_answer(final[tab.chatbot])
    assert "Compared with the earlier photo:" in answer and "bigger" in answer
    assert "seems to have grown" in answer and "Please see a doctor soon" in answer
