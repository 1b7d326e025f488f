"""Hybrid retrieval over the real KB with the real MiniLM model: lay words, misspellings, boosts, the cache."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Any

import pytest
from knowledge_fixtures import kb_index  # noqa: F401 - pytest fixture

LAY_PHRASINGS = [
    ("is ringworm contagious to my kids", "tinea"),
    ("mole that changed shape and colour", "melanoma"),
    ("could this be melanomia", "melanoma"),
    ("psoraisis on my elbows and knees", "psoriasis"),
    ("cold sore on my lip keeps coming back", "herpes_simplex"),
    ("itchy welts after eating nuts", "urticaria"),
    ("painful blistery stripe on one side of my chest", "herpes_zoster"),
    ("athletes foot between my toes", "tinea"),
    ("pimples and blackheads on my teenage son's face", "acne"),
    ("white patches where my skin lost its colour", "vitiligo"),
    ("spreading hot red swollen leg and fever", "cellulitis"),
    ("intensely itchy rash worse at night, whole family itching", "scabies"),
]


@pytest.mark.parametrize(("question", "expected"), LAY_PHRASINGS)
def test_lay_phrasings_find_the_right_condition(kb_index: Any, question: str, expected: str) -> None:
    result = kb_index.search(question, audience="patient", k=20)
    assert expected in result.conditions()[:3], (question, result.conditions()[:3], result.analysis)


def test_misspelling_is_corrected_against_the_kb_vocabulary(kb_index: Any) -> None:
    analysis = kb_index.analyze("treatment for psoraisis")
    assert "psoraisis" in analysis.corrections  # to the closest word the KB uses (a name or listed misspelling)
    assert analysis.mentioned == ["psoriasis"]
    assert kb_index.analyze("vitiligo").corrections == {}  # known words are left alone


@pytest.mark.parametrize("question", ["Ist das gefährlich?", "¿Es esto cáncer?", "C'est une éruption ?"])
def test_spelling_correction_leaves_accented_words_whole(kb_index: Any, question: str) -> None:
    # "gefährlich" was read as "gef" + "hrlich", and "hrlich" was "corrected" to "rich" inside the word.
    analysis = kb_index.analyze(question)
    assert analysis.corrections == {} and analysis.corrected == question


def test_section_intent_orders_the_named_conditions_sections(kb_index: Any) -> None:
    result = kb_index.search("how do I treat ringworm at home", audience="patient", k=5)
    assert result.hits[0].chunk.condition_id == "tinea"
    assert result.hits[0].chunk.section == "self_care"


def test_differential_restricts_a_vague_follow_up(kb_index: Any) -> None:
    result = kb_index.search(
        "what should I watch for?",
        audience="patient",
        k=6,
        differential={"melanoma": 0.6, "melanocytic_nevus": 0.4},
        restrict_to=["melanoma", "melanocytic_nevus"],
    )
    assert {h.chunk.condition_id for h in result.hits} <= {"melanoma", "melanocytic_nevus"}
    assert result.hits[0].chunk.condition_id == "melanoma"
    assert result.hits[0].chunk.section == "red_flags"


def test_differential_boost_moves_a_condition_up(kb_index: Any) -> None:
    question = "red scaly patches on my skin"
    plain = kb_index.search(question, audience="patient", k=40).conditions()
    target = plain[5]
    boosted = kb_index.search(question, audience="patient", k=40, differential={target: 0.9}).conditions()
    assert boosted.index(target) < plain.index(target)


def test_langchain_retriever_interface(kb_index: Any) -> None:
    retriever = kb_index.as_retriever(k=5, audience="clinician")
    docs = retriever.invoke("dermoscopy of a pearly papule with arborising vessels")
    assert len(docs) == 5
    assert "basal_cell_carcinoma" in [d.metadata["condition_id"] for d in docs]
    assert all(d.metadata["source_ids"] and d.page_content for d in docs)


def test_index_cache_is_reused_and_rebuilt_when_the_kb_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dermchat.knowledge.index import build_index, get_index
    from dermchat.knowledge.kb import KB_DIR, load_kb

    monkeypatch.setenv("DERMCHAT_CACHE_DIR", str(tmp_path / "cache"))
    kb_dir = tmp_path / "kb"
    kb_dir.mkdir()
    for name in ("tinea.md", "scabies.md", "acne.md"):
        shutil.copy(KB_DIR / name, kb_dir / name)
    first = build_index(load_kb(kb_dir))
    again = build_index(load_kb(kb_dir))
    assert not first.build.from_cache and again.build.from_cache
    assert first.build.cache_key == again.build.cache_key
    assert (again.vectors == first.vectors).all()

    shared = []
    threads = [threading.Thread(target=lambda: shared.append(get_index(kb_dir))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(i) for i in shared}) == 1  # concurrent first use builds one index

    path = kb_dir / "acne.md"
    path.write_text(
        path.read_text(encoding="utf-8").replace(
            "## Self-care\n", "## Self-care\nGreen tea tree gel is a zebra-striped remedy. [nhs-acne]\n", 1
        ),
        encoding="utf-8",
    )
    changed = get_index(kb_dir)
    assert changed is not shared[0]
    assert not changed.build.from_cache and changed.build.cache_key != first.build.cache_key
    hit = changed.search("zebra-striped remedy", k=1).hits[0]
    assert "zebra-striped" in hit.chunk.text


def test_eval_rag_command_on_a_small_question_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kb_index: Any
) -> None:
    import json

    from dermchat.cli import main

    questions = tmp_path / "q.jsonl"
    rows = [
        {"question": "is ringworm contagious", "condition": "tinea", "section": "What it is", "audience": "patient"},
        {"question": "mole that changed", "condition": "melanoma", "section": "red_flags", "audience": "patient"},
    ]
    questions.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    assert main(["eval-rag", "--questions", str(questions), "--json", "--no-build-timing"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["questions"] == 2 and figures["condition"]["recall@3"] == 1.0
    assert set(figures["latency_ms"]) >= {"p50", "p95"} and figures["readability"]["sections"] > 0
    assert set(figures["latency_stages_ms"]) == {"analyze", "embed", "dense", "bm25", "fuse"}
    assert "fresh" in figures["latency_note"] and figures["question_set"]["description"] == "custom question file"

    assert main(["eval-rag", "--questions", "heldout", "--limit", "3", "--json", "--no-build-timing"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["questions"] == 3 and "never used for tuning" in figures["question_set"]["description"]

    questions.write_text(
        '{"question": "x", "condition": "not_a_condition", "section": "What it is"}\n', encoding="utf-8"
    )
    assert main(["eval-rag", "--questions", str(questions)]) == 2
    assert "unknown condition 'not_a_condition'" in capsys.readouterr().err
    assert main(["eval-rag", "--questions", str(tmp_path / "missing.jsonl")]) == 2
