"""The generated-answer path of ``kb-rag`` with a real (tiny, random) local model and a real local server.

The tiny models write noise, so these tests check the contract: the generator is called with the retrieved
passages, its output goes through the grounding check, unsupported text never reaches the user, and the
answer that is shown is fully cited either way.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from knowledge_fixtures import knowledge_app

from dermchat import safety
from dermchat.request import TurnRequest
from dermchat.results import TurnResult

vlm_fixtures = pytest.importorskip("vlm_fixtures", reason="tests/vlm_fixtures.py (tiny models, test server) is missing")
tiny_llama_dir = vlm_fixtures.tiny_llama_dir
openai_text_server = vlm_fixtures.openai_text_server


def follow_up(app: Any) -> TurnResult:
    """A text follow-up about an earlier result, so the explainer answers a question with retrieval."""
    from dermchat.results import Diagnosis, DifferentialEntry, Triage

    previous = TurnResult(
        turn_id="prev",
        diagnosis=Diagnosis(
            provider_id="test",
            differential=[DifferentialEntry(condition_id="tinea", probability=1.0)],
            prediction_set=["tinea"],
        ),
        triage=Triage(tier="routine", reason="test"),
    )
    return app.run_turn_sync(
        TurnRequest(image=None, question="is it contagious and how is it treated?", previous=previous)
    )


def assert_generated_path_was_checked(result: TurnResult) -> None:
    assert not result.errors, result.errors
    exp = result.explanation
    assert exp is not None and exp.provider_id == "kb-rag"
    gen = exp.extra["generation"]
    assert gen["status"] in {"used", "fallback_extractive"}, gen
    assert gen["raw_chars"] > 0  # the model really produced text
    # whatever is shown is cited: each paragraph ends with a marker, every marker resolves
    markers = {c.marker for c in exp.citations}
    assert exp.text and markers
    for paragraph in exp.text.split("\n\n"):
        assert re.search(r"\[\d+\]$", paragraph.strip()), paragraph
    assert set(re.findall(r"\[\d+\]", exp.text)) <= markers
    if gen["status"] == "fallback_extractive":
        assert exp.extra["mode"] == "extractive" and exp.grounded
    else:
        assert exp.grounded == (not gen["removed"] and not gen["marked"])
    assert safety.NOT_A_DIAGNOSIS in result.notices


def test_local_transformers_generator(tmp_path: Path, tiny_llama_dir: Path) -> None:
    app = knowledge_app(
        tmp_path,
        kb_options={
            "generator": "transformers",
            "generator_model": str(tiny_llama_dir),
            "max_new_tokens": 24,
            "generator_options": {"device": "cpu"},
        },
    )
    assert not app.configuration_errors
    assert_generated_path_was_checked(follow_up(app))


def test_openai_compatible_server_generator(tmp_path: Path, openai_text_server: Any) -> None:
    app = knowledge_app(
        tmp_path,
        kb_options={
            "generator": "openai",
            "generator_model": "tiny-llama",
            "base_url": openai_text_server.base_url,
            "api_key_env": None,
            "max_new_tokens": 24,
        },
    )
    assert_generated_path_was_checked(follow_up(app))


def test_unreachable_server_falls_back_to_the_extractive_answer(tmp_path: Path) -> None:
    app = knowledge_app(
        tmp_path,
        kb_options={
            "generator": "openai",
            "generator_model": "x",
            "base_url": "http://127.0.0.1:9/v1",
            "api_key_env": None,
            "generator_options": {"timeout_s": 2, "retries": 0},
        },
    )
    result = follow_up(app)
    exp = result.explanation
    assert exp is not None and exp.extra["generation"]["status"] == "failed"
    assert exp.extra["mode"] == "extractive" and re.search(r"\[\d+\]$", exp.text)


def test_generator_without_a_model_is_a_clear_error(tmp_path: Path) -> None:
    app = knowledge_app(tmp_path, kb_options={"generator": "transformers"})
    result = follow_up(app)
    assert result.explanation is None
    assert any("needs 'generator_model'" in e.message for e in result.errors)
