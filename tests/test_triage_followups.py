"""Issue 19 item 4: follow-ups answered from the turn's own result, off-topic replies, a notice in the user's
language (the real ``kb-rag`` explainer over the packaged knowledge base)."""

from __future__ import annotations

from pathlib import Path

import pytest
from core_helpers import solid_image
from knowledge_fixtures import kb_index, knowledge_app  # noqa: F401 - kb_index is a pytest fixture

from dermchat.knowledge.answer import OFF_TOPIC_NOTICE
from dermchat.knowledge.intents import OFF_TOPIC_REPLY, detect_intent
from dermchat.language import NOTICES, detect
from dermchat.render import render
from dermchat.request import TurnRequest


@pytest.mark.parametrize(
    "question, intent",
    [
        ("What should I do next?", "what_next"),
        ("how urgent is this?", "how_urgent"),
        ("is it cancer?", "is_cancer"),
        ("is it contagious?", "contagious"),
        ("can I treat it myself?", "self_treat"),
        ("will it go away on its own?", "go_away"),
        ("what is this?", "what_is"),
        ("tell me a joke", None),
    ],
)
def test_common_follow_up_intents_are_recognised(question: str, intent: str | None) -> None:
    assert detect_intent(question) == intent


def test_what_next_on_a_red_tier_photo_answers_from_the_result_first(tmp_path: Path) -> None:
    # It used to open with "A mole is a harmless group..." plus "the sources don't seem to cover your question".
    app = knowledge_app(tmp_path, fakes=True)
    dark = solid_image(tmp_path / "dark.png", (90, 80, 80))
    first = app.run_turn_sync(TurnRequest(image=dark, question="", force=True))
    assert first.triage.tier == "urgent"
    follow = app.run_turn_sync(TurnRequest(image=None, question="What should I do next?", previous=first))
    lead = follow.explanation.lead
    assert lead.startswith("**Your result:**") and "Melanoma" in lead and "Watch for:" in lead
    assert "harmless" not in lead
    shown = render(follow, "patient")
    assert shown.index("Your result") < shown.index("Sources:")  # the result first, then the cited sources
    assert OFF_TOPIC_NOTICE not in follow.notices and follow.explanation.citations


def test_off_topic_question_without_a_photo_gets_a_short_reply(tmp_path: Path) -> None:
    result = knowledge_app(tmp_path).run_turn_sync(TurnRequest(image=None, question="how do I bake sourdough bread?"))
    assert result.explanation.text.startswith(OFF_TOPIC_REPLY)
    assert not result.explanation.conditions_to_consider


@pytest.mark.parametrize(
    "text, code",
    [
        ("¿Es contagioso el eccema que tengo en las manos?", "es"),
        ("Est-ce que ce grain de beauté est dangereux ?", "fr"),
        ("Ist dieser Leberfleck gefährlich?", "de"),
        ("这个痣危险吗？我很担心", "zh-cn"),
        ("Is melanoma contagious?", None),
        ("urticaria after penicillin", None),
        ("what is this?", None),
    ],
)
def test_language_is_detected_offline_and_english_medical_terms_stay_english(text: str, code: str | None) -> None:
    assert detect(text) == code


def test_a_question_in_another_language_gets_a_notice_in_that_language(tmp_path: Path) -> None:
    result = knowledge_app(tmp_path).run_turn_sync(
        TurnRequest(image=None, question="¿Es contagioso el eccema que tengo en las manos?")
    )
    assert result.language == "es" and NOTICES["es"] in result.notices
    assert "inglés" in render(result, "patient")


def test_a_red_flag_message_without_a_photo_gets_no_reassurance(tmp_path: Path) -> None:
    # "I have a mole ... bleeding" used to get "A mole is a harmless group of cells ... stay harmless for life".
    result = knowledge_app(tmp_path).run_turn_sync(
        TurnRequest(image=None, question="I have a mole on my back that has started bleeding and it itches")
    )
    text = render(result, "patient")
    assert result.triage.tier == "urgent" and "see a doctor soon" in text.lower()
    assert "harmless" not in text.lower() and result.explanation.conditions_to_consider


def test_a_warning_sign_told_as_a_story_leads_the_list_with_the_entry_that_states_it(tmp_path: Path) -> None:
    # It got no tier, and pityriasis versicolor ("lighter or darker patches") led the conditions to consider.
    story = "a freckle on my back went from light brown to black and itches now"
    result = knowledge_app(tmp_path).run_turn_sync(TurnRequest(image=None, question=story))
    assert result.triage is not None and result.triage.tier == "urgent"
    assert [hit.id for hit in result.red_flags] == ["changing_mole", "itchy_mole"]  # the colour change, then the itch
    considered = result.explanation.conditions_to_consider
    assert considered[0].condition_id == result.red_flags[0].source == "melanocytic_nevus"
    assert any("colour" in flag for flag in considered[0].red_flags)
    # the entries that state the two signs lead (the itch's is melanoma's), then what the words match still follows
    assert [c.condition_id for c in considered[:2]] == ["melanocytic_nevus", "melanoma"] and len(considered) > 2
