"""The per-question retrieval path: each fast step gives what the slower reference it replaced gives.

The query encoder must embed like sentence-transformers, the BM25 matrix must score like ``rank_bm25``, the
spelling prefilter must pick what ``difflib.get_close_matches`` picks, and the label prefilter must find
what a scan of every label finds; otherwise a speed-up would silently change retrieval.
"""

from __future__ import annotations

import difflib
import json
import random
from typing import Any

import numpy as np
import pytest
from knowledge_fixtures import kb_index  # noqa: F401 - pytest fixture

from dermchat.knowledge import embeddings
from dermchat.knowledge.evaluate import DEFAULT_QUESTIONS, HELDOUT_QUESTIONS, load_questions
from dermchat.knowledge.query import tokenize

QUESTIONS = [q.question for q in load_questions(DEFAULT_QUESTIONS)[::4]] + [
    "ECZEMA?? on my baby's cheeks!!",
    "rash",
    "a",
    "über-itchy spots (3 weeks) — help",
    "Mohs vs WLE for nodular BCC",
]


def test_query_encoders_match_sentence_transformers() -> None:
    reference = embeddings.encode(QUESTIONS)  # SentenceTransformer.encode: batched, padded
    torch_path = embeddings.QueryEncoder(embeddings.get_model())
    for encoder in (torch_path, embeddings.get_query_encoder()):
        fast = np.stack([encoder(text) for text in QUESTIONS])
        assert fast.dtype == np.float32 and fast.shape == reference.shape
        cosine = (fast * reference).sum(axis=1)
        assert cosine.min() >= 0.999, [(q, round(float(c), 5)) for q, c in zip(QUESTIONS, cosine) if c < 0.999]
        assert np.allclose(np.linalg.norm(fast, axis=1), 1.0, atol=1e-5)


def test_onnx_runtime_is_the_default_query_path_and_embeds_like_torch() -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from dermchat.knowledge.onnx_query import OnnxQueryEncoder

    assert embeddings.query_backend() == "onnxruntime"
    onnx_path = embeddings.get_query_encoder()
    assert isinstance(onnx_path, OnnxQueryEncoder)
    torch_path = embeddings.QueryEncoder(embeddings.get_model())
    for text in QUESTIONS:
        assert onnx_path.token_ids(text) == torch_path.token_ids(text)
        assert float(onnx_path(text) @ torch_path(text)) >= 0.99999, text


def test_onnx_graph_is_exported_once_into_the_cache(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from dermchat.knowledge import onnx_query

    monkeypatch.setenv("DERMCHAT_CACHE_DIR", str(tmp_path))
    model = embeddings.get_model()
    torch_path = embeddings.QueryEncoder(model)
    exported = onnx_query.OnnxQueryEncoder(torch_path, threads=1)
    path = onnx_query.graph_path()
    assert path.parent == tmp_path / "onnx" and path.exists() and list(path.parent.iterdir()) == [path]
    export = onnx_query.export_graph

    def no_export(*args: Any) -> Any:
        raise AssertionError("the graph was exported again")

    monkeypatch.setattr(onnx_query, "export_graph", no_export)
    loaded = onnx_query.OnnxQueryEncoder(torch_path, threads=1)  # a later process: loads the file
    monkeypatch.setattr(onnx_query, "export_graph", export)
    path.write_bytes(b"half a file")  # a damaged cache entry is exported again, not a reason to give up
    repaired = onnx_query.OnnxQueryEncoder(torch_path, threads=1)
    for text in QUESTIONS[:5]:
        reference = torch_path(text)
        assert min(float(e(text) @ reference) for e in (exported, loaded, repaired)) >= 0.99999, text


def test_query_backend_setting_and_fallback(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from dermchat.knowledge import onnx_query

    model = embeddings.get_model()
    monkeypatch.setenv(embeddings.QUERY_BACKEND_ENV, "torch")
    assert embeddings.query_backend_setting() == "torch"
    encoder, name = embeddings._build_query_encoder(model, "torch")
    assert name == "torch" and isinstance(encoder, embeddings.QueryEncoder)
    monkeypatch.setenv(embeddings.QUERY_BACKEND_ENV, "tensorflow")
    with pytest.raises(ValueError, match="'auto' or 'torch'"):
        embeddings.query_backend_setting()

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("no session today")

    monkeypatch.setattr(onnx_query, "available", lambda: (True, ""))
    monkeypatch.setattr(onnx_query, "OnnxQueryEncoder", broken)
    with caplog.at_level("WARNING"):
        encoder, name = embeddings._build_query_encoder(model, "auto")
    assert name == "torch" and isinstance(encoder, embeddings.QueryEncoder)
    assert "no session today" in caplog.text  # the reason for the slower path is in the log
    monkeypatch.setattr(onnx_query, "available", lambda: (False, "not installed: onnxruntime"))
    assert embeddings._build_query_encoder(model, "auto")[1] == "torch"


def test_unsupported_pipelines_are_refused_with_a_reason() -> None:
    model = embeddings.get_model()
    assert embeddings.QueryEncoder.supports(model) == (True, "")
    ok, reason = embeddings.QueryEncoder.supports([model[0], model[1]])  # no Normalize step
    assert not ok and "pipeline" in reason
    with pytest.raises(ValueError, match="cannot run this model"):
        embeddings.QueryEncoder([model[0]])


def test_cached_and_fresh_query_embeddings_agree_and_fresh_skips_the_cache() -> None:
    text = "is ringworm contagious to my cat"
    cached = embeddings.encode_query(text)
    hits = embeddings._cached_query.cache_info().hits
    fresh = embeddings.encode_query(text, cache=False)
    assert embeddings._cached_query.cache_info().hits == hits  # the fresh path did not read the cache
    assert np.array_equal(cached, fresh)
    assert embeddings.encode_query(text) is cached  # a repeated question embeds once...
    with pytest.raises(ValueError):
        cached[0] = 1.0  # ...so nobody may change the shared vector


def test_bm25_matrix_scores_exactly_like_rank_bm25(kb_index: Any) -> None:
    queries = [tokenize(q) for q in QUESTIONS] + [["zzzunknown"], ["rash", "rash", "itch"], []]
    for tokens in queries:
        assert np.array_equal(kb_index.bm25_matrix.scores(tokens), kb_index.bm25.get_scores(tokens)), tokens


def test_spelling_prefilter_picks_what_difflib_picks(kb_index: Any) -> None:
    analyzer = kb_index.analyzer
    rng = random.Random(7)
    words = [w for w in analyzer.words if len(w) >= 5]
    probes = ["melanomia", "psoraisis", "excema", "shingels", "impetago", "zzzzzzz", "qwertyuiop"]
    for word in rng.sample(words, 150):
        cut = rng.randrange(len(word))
        probes += [word[:cut] + word[cut + 1 :], word[:cut] + rng.choice("aeiousty") + word[cut + 1 :]]
    for probe in probes:
        pool = [w for w in analyzer.words if abs(len(w) - len(probe)) <= 2]
        expected = difflib.get_close_matches(probe, pool, n=1, cutoff=0.8)
        analyzer.forget_corrections()
        assert analyzer._closest(probe) == (expected[0] if expected and expected[0] != probe else None), probe


def test_real_words_are_not_corrected_into_other_kb_words(kb_index: Any) -> None:
    # "turned" and "might" are words the KB never uses, one letter from "burned" and "tight"
    analysis = kb_index.analyze("my psoriasis has turned red and it might spread")
    assert "turned" in analysis.corrected and "might" in analysis.corrected, analysis.corrections
    assert kb_index.analyze("could this be melanomia").mentioned == ["melanoma"]  # misspellings still are


def test_label_prefilter_finds_what_scanning_every_label_finds(kb_index: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    analyzer = kb_index.analyzer
    texts = [q.question for q in load_questions(DEFAULT_QUESTIONS)] + [
        "warts and verrucas",
        "Basal cell carcinomas or SCCs?",
        "cold sores, shingles and chickenpox",
        "moles",
    ]
    fast = [analyzer.mentioned_conditions(t) for t in texts]
    every_label = [label for label in analyzer._label_list if len(label) >= 2]
    monkeypatch.setattr(analyzer, "_candidate_labels", lambda norm: every_label)
    assert fast == [analyzer.mentioned_conditions(t) for t in texts]
    assert any(fast)


def test_search_reports_where_its_time_went(kb_index: Any) -> None:
    result = kb_index.search("itchy ring on my arm", audience="patient", k=5, reuse_embedding=False)
    assert set(result.timings) == {"analyze", "embed", "dense", "bm25", "fuse"}
    assert all(v >= 0 for v in result.timings.values())
    assert sum(result.timings.values()) <= result.elapsed_ms + 0.01


def test_dense_ranking_is_the_vector_stores_ranking(kb_index: Any) -> None:
    vector = embeddings.encode_query("pearly bump with little blood vessels on my nose")
    pairs = kb_index.store.similarity_search_with_score_by_vector(vector.tolist(), k=20)
    assert kb_index._dense_ranking(vector, 20) == [doc.id for doc, _ in pairs]


def test_heldout_questions_are_new_and_varied() -> None:
    dev = {" ".join(q.question.lower().split()) for q in load_questions(DEFAULT_QUESTIONS)}
    heldout = load_questions(HELDOUT_QUESTIONS)
    assert len(heldout) >= 60
    assert not dev & {" ".join(q.question.lower().split()) for q in heldout}
    assert len({q.condition for q in heldout}) >= 40 and len({q.section for q in heldout}) == 8
    assert {q.audience for q in heldout} == {"patient", "clinician"}
    rows = [json.loads(line) for line in HELDOUT_QUESTIONS.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert all(set(row) == {"question", "condition", "section", "audience"} for row in rows)  # the dev schema
