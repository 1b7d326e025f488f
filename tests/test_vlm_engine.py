"""The VLM providers inside the real turn pipeline: fallback when unavailable, streamed rationale, second opinion."""

from __future__ import annotations

from pathlib import Path

import pytest

from dermchat.engine import DermChat
from dermchat.plugin_manager import PluginManager
from dermchat.render import render
from dermchat.request import TurnRequest
from dermchat.results import StepEvent, TurnResult
from dermchat.settings import Settings
from tests.vlm_fixtures import (  # noqa: F401 - fixture
    STRUCTURED_CHUNKS,
    lesion_photo,
    sse_body,
    start_recorded_server,
    tiny_gemma3_dir,
)

OFFLINE_HUB_VLM = {"transformers-vlm": {"model": "google/medgemma-4b-it"}}


def app_with(**settings: object) -> DermChat:
    """Only the diagnosis step: quality, explanation and references are other plugins' business."""
    return DermChat(settings=Settings(quality=None, explainer=None, references=[], **settings))  # type: ignore[arg-type]


def run(app: DermChat, tmp_path: Path, question: str = "What is this?") -> tuple[TurnResult, list[StepEvent]]:
    events = list(app.run_turn(TurnRequest(image=lesion_photo(), question=question, workdir=tmp_path)))
    result = events[-1].result
    assert result is not None
    return result, events


def test_falls_back_to_the_offline_classifier_when_the_vlm_is_unavailable(tmp_path: Path) -> None:
    app = app_with(diagnoser="transformers-vlm", options=OFFLINE_HUB_VLM)
    ham = app.provider("diagnoser", "ham-cnn")
    if ham is None or not ham.available()[0]:
        pytest.skip(f"ham-cnn is not available here ({ham.available()[1] if ham else 'not installed'})")
    result, _ = run(app, tmp_path)
    assert result.providers["diagnoser"].id == "ham-cnn"  # type: ignore[union-attr]
    assert result.diagnosis is not None and result.diagnosis.provider_id == "ham-cnn"
    fallback = [n for n in result.notices if "Using the offline image model instead" in n]
    assert fallback and "is unavailable" in fallback[0]
    assert "local cache" not in fallback[0]  # a patient is told what is missing, not how to download it
    clinician = app.run_turn_sync(
        TurnRequest(image=lesion_photo(), question="What is this?", audience="clinician", workdir=tmp_path)
    )
    assert any(
        "is unavailable: model google/medgemma-4b-it is not in the local cache" in n
        and "Using the offline image model instead" in n
        for n in clinician.notices
    )


def test_without_any_diagnoser_the_turn_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DERMCHAT_PLUGINS_DENY", "ham_classifier")
    app = DermChat(
        settings=Settings(
            quality=None, explainer=None, references=[], diagnoser="transformers-vlm", options=OFFLINE_HUB_VLM
        ),
        plugins=PluginManager(),
    )
    result, _ = run(app, tmp_path)
    assert result.status == "diagnosis_failed"
    assert "not in the local cache and the hub is offline" in result.message


def test_server_vlm_turn_streams_rationale_with_local_vlm_as_second_opinion(
    tmp_path: Path, tiny_gemma3_dir: Path
) -> None:
    running, _ = start_recorded_server([(200, sse_body(STRUCTURED_CHUNKS), "text/event-stream")])
    try:
        app = app_with(
            diagnoser="openai-vlm",
            second_opinion="transformers-vlm",
            audience="clinician",
            options={
                "openai-vlm": {"base_url": running.base_url, "model": "medgemma", "api_key_env": None, "retries": 0},
                "transformers-vlm": {"model": str(tiny_gemma3_dir), "max_new_tokens": 16},
            },
        )
        result, events = run(app, tmp_path)
    finally:
        running.close()
    assert result.status == "ok" and result.diagnosis is not None
    assert [e.condition_id for e in result.diagnosis.differential] == ["melanocytic_nevus", "melanoma"]
    assert result.triage is not None and result.triage.tier == "urgent"  # melanoma at 30%: safety policy wins
    progress = [e.message for e in events if e.step == "diagnosis" and e.kind == "progress"]
    assert "The spot is evenly brown with a smooth, regular border." in progress
    assert not any("{" in message for message in progress)
    second = result.second_opinion
    assert second is not None and second.provider_id == "transformers-vlm"
    text = render(result, "clinician")
    assert "**Second opinion (transformers-vlm)**" in text and "Rationale: The spot is evenly brown" in text


def test_second_opinion_against_the_offline_classifier_compares_top_conditions(tmp_path: Path, ham_image: Path) -> None:
    """A real dermoscopic photo: the ImageNet-based ham-cnn abstains on the drawn spot the VLM tests use."""
    from PIL import Image

    running, _ = start_recorded_server([(200, sse_body(STRUCTURED_CHUNKS), "text/event-stream")])
    try:
        app = app_with(
            diagnoser="openai-vlm",
            second_opinion="ham-cnn",
            audience="clinician",
            options={"openai-vlm": {"base_url": running.base_url, "model": "medgemma", "api_key_env": None}},
        )
        ham = app.provider("diagnoser", "ham-cnn")
        if ham is None or not ham.available()[0]:
            pytest.skip("ham-cnn is not available here")
        with Image.open(ham_image) as im:
            photo = im.convert("RGB")
        events = list(app.run_turn(TurnRequest(image=photo, question="What is this?", workdir=tmp_path)))
        result = events[-1].result
        assert result is not None
    finally:
        running.close()
    second = result.second_opinion
    assert second is not None and second.provider_id == "ham-cnn"
    assert isinstance(second.extra["agrees_on_top"], bool)
    assert ("agrees on the top condition" in render(result, "clinician")) is second.extra["agrees_on_top"]
