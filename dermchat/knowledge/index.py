"""Hybrid retrieval over the knowledge base: dense (MiniLM in a langchain FAISS store) + BM25, fused by RRF.

Why hybrid: embeddings (MiniLM vectors in a langchain FAISS store) catch paraphrases ("itchy ring on my arm"), BM25 catches rare exact words ("tinea",
"Mohs") that small embedding models blur. Reciprocal rank fusion needs no score calibration between the two.
On top of the fused rank, the index boosts the conditions a question names (after spelling correction), the
conditions in the current differential, the section the question is about and passages written for the
reader's audience.

The embeddings are cached on disk in ``dermchat.paths.cache_dir()`` under a key made from the KB files, the
vocabulary, the model and the chunking settings, so an edited KB is re-embedded and an unchanged one loads in
milliseconds. ``get_index()`` is lazy and thread-safe: concurrent chats build the index once.

Per question the work is: analyse the words (spelling, names, section cues), embed the question
(:func:`embeddings.encode_query`), one exact inner-product search in the FAISS index under the langchain store,
BM25 scores from a precomputed term x chunk matrix (:class:`BM25Matrix`), and the fusion below. Nothing is
rebuilt per question, and ``SearchResult.timings`` says where a question's milliseconds went.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dermchat.knowledge import embeddings
from dermchat.knowledge.kb import (
    SECTIONS,
    CitedText,
    KnowledgeBase,
    Passage,
    Statement,
    build_label_index,
    get_kb,
)
from dermchat.knowledge.query import QueryAnalysis, QueryAnalyzer, tokenize
from dermchat.paths import cache_dir
from dermchat.vocabulary import VOCABULARY_FILE, get_vocabulary

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

INDEX_VERSION = "3"
CHUNK_CHARS = 480  # a few sentences: small enough to be specific, big enough to carry context
RRF_K = 10  # small k: the first few places of each retriever matter most (tuned on the dev set)
CANDIDATES = 60  # per retriever, before fusion
W_DENSE = 1.0
W_BM25 = 1.5  # exact medical words ("telangiectasia", "KOH") are strong evidence for a small encoder's blind spots
FIRST = 1.0 / (RRF_K + 1)  # one retriever's first place: the unit of every boost below
BOOST_MENTIONED = 3.0 * FIRST  # the question names the condition: it dominates the fused rank
BOOST_DIFFERENTIAL = 1.2 * FIRST  # times the probability of the condition in the current differential
BOOST_SECTION = 0.75 * FIRST  # times the section-intent weight; orders sections within a condition
BOOST_AUDIENCE = 0.25 * FIRST  # a passage written for this reader
SECOND_CHUNK = 0.0  # weight of a condition's second-best chunk in its evidence (0: best chunk only)
CHUNK_WEIGHT = 1.0  # how much a chunk's own fit can move it past another condition's chunks
BM25_SYNONYMS = True  # index every synonym with each chunk (lay names reach BM25 even unrecognised)
GENERIC_LABEL_SHARE = 1 / 3  # a one-word name used in this share of all conditions' text names none of them


@dataclass(frozen=True)
class Chunk(CitedText):
    """A retrievable unit: consecutive statements of one condition, section and audience block."""

    id: str
    condition_id: str
    section: str
    audience: str
    statements: tuple[Statement, ...]
    embed_text: str


@dataclass
class Hit:
    chunk: Chunk
    score: float
    dense_rank: int | None = None
    bm25_rank: int | None = None


@dataclass
class SearchResult:
    hits: list[Hit]
    analysis: QueryAnalysis
    elapsed_ms: float = 0.0
    # milliseconds per stage (analyze, embed, dense, bm25, fuse): where a slow question's time went
    timings: dict[str, float] = field(default_factory=dict)
    # cosine similarity of the question to the closest chunk of the whole KB: how much the KB is about it
    top_similarity: float = 0.0

    def conditions(self) -> list[str]:
        """Condition ids in rank order (each once)."""
        return list(dict.fromkeys(h.chunk.condition_id for h in self.hits))

    def condition_sections(self) -> list[tuple[str, str]]:
        return list(dict.fromkeys((h.chunk.condition_id, h.chunk.section) for h in self.hits))


@dataclass
class BuildInfo:
    cache_key: str
    cache_path: str
    from_cache: bool
    seconds: float
    chunks: int
    extra: dict[str, Any] = field(default_factory=dict)


def _group_passages(kb: KnowledgeBase) -> list[tuple[str, str, str, list[Passage]]]:
    """Passages grouped by (condition, section, audience), in file order."""
    groups: dict[tuple[str, str, str], list[Passage]] = {}
    for passage in kb.passages():
        groups.setdefault((passage.condition_id, passage.section, passage.audience), []).append(passage)
    return [(c, s, a, ps) for (c, s, a), ps in groups.items()]


def build_chunks(kb: KnowledgeBase) -> list[Chunk]:
    """Split each section block into chunks with langchain's text splitter, never cutting a sentence.

    Statements go one per line and the splitter may only break on newlines, so every chunk is a run of whole
    sentences that keep their own citation markers.
    """
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    splitter = RecursiveCharacterTextSplitter(chunk_size=CHUNK_CHARS, chunk_overlap=0, separators=["\n"])
    chunks: list[Chunk] = []
    for condition_id, section, audience, passages in _group_passages(kb):
        entry = kb.get(condition_id)
        statements = [s for p in passages for s in p.statements]
        lines = [" ".join(s.text.split()) for s in statements]
        position = 0
        for n, piece in enumerate(splitter.split_text("\n".join(lines))):
            count = len([line for line in piece.split("\n") if line.strip()])
            part = tuple(statements[position : position + count])
            position += count
            if not part:
                continue
            heading = SECTIONS.get(section, section)
            names = (
                entry.patient_name
                if entry.patient_name == entry.clinician_name
                else f"{entry.patient_name}; {entry.clinician_name}"
            )
            chunks.append(
                Chunk(
                    id=f"{condition_id}/{section}/{audience}/{n}",
                    condition_id=condition_id,
                    section=section,
                    audience=audience,
                    statements=part,
                    embed_text=f"{names}. {heading}: " + " ".join(s.text for s in part),
                )
            )
        if position != len(statements):  # the splitter must account for every statement
            raise RuntimeError(f"chunking lost statements in {condition_id}/{section}")
    return chunks


def cache_key(kb: KnowledgeBase) -> str:
    h = hashlib.sha256()
    for part in (INDEX_VERSION, str(CHUNK_CHARS), embeddings.model_version(), kb.digest):
        h.update(part.encode())
        h.update(b"\0")
    h.update(VOCABULARY_FILE.read_bytes())
    return h.hexdigest()[:24]


def _vector_store(chunks: list[Chunk], vectors: np.ndarray) -> Any:
    """A langchain FAISS store (exact inner product = cosine on normalised vectors) over precomputed vectors.

    FAISS rather than ``InMemoryVectorStore``: the latter rebuilds a matrix from Python lists on every query
    (about 20 ms for 500 chunks here), FAISS searches the same vectors in well under a millisecond.
    """
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # langchain-community announces its own sunset
        from langchain_community.vectorstores import FAISS
        from langchain_community.vectorstores.utils import DistanceStrategy

    by_text = {c.embed_text: vectors[i].tolist() for i, c in enumerate(chunks)}
    return FAISS.from_embeddings(
        [(c.embed_text, by_text[c.embed_text]) for c in chunks],
        _precomputed_embeddings(by_text),
        metadatas=[{"condition_id": c.condition_id, "section": c.section, "audience": c.audience} for c in chunks],
        ids=[c.id for c in chunks],
        distance_strategy=DistanceStrategy.MAX_INNER_PRODUCT,
    )


def _precomputed_embeddings(vectors: dict[str, list[float]]) -> Any:
    """An ``Embeddings`` that returns cached vectors for known texts and embeds anything else live."""
    from langchain_core.embeddings import Embeddings

    live = embeddings.langchain_embeddings()

    class PrecomputedEmbeddings(Embeddings):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            missing = [t for t in texts if t not in vectors]
            if missing:
                for text, vec in zip(missing, live.embed_documents(missing)):
                    vectors[text] = vec
            return [vectors[t] for t in texts]

        def embed_query(self, text: str) -> list[float]:
            vector: list[float] = live.embed_query(text)
            return vector

    return PrecomputedEmbeddings()


class BM25Matrix:
    """BM25 (Okapi, as fitted by ``rank_bm25``) scores for a whole query in a few numpy row additions.

    Why: ``BM25Okapi.get_scores`` walks every chunk's term dictionary in Python once per query word (a few ms
    per question with a condition's synonyms added). A term's BM25 contribution to a chunk depends only on the
    term and the chunk, so it is computed once here for every (term, chunk) pair with ``rank_bm25``'s own
    fitted idf, k1, b and lengths and the same float64 arithmetic; a query then adds one row per word, in
    query order, which gives exactly ``get_scores`` (a test compares them). Dense float64: terms x chunks is
    about 2,500 x 500 here (10 MB); a KB ten times larger would want a sparse matrix.
    """

    def __init__(self, bm25: Any) -> None:
        import numpy as np

        self.rows = {term: i for i, term in enumerate(bm25.idf)}
        freq = np.zeros((len(self.rows), bm25.corpus_size))
        for doc, counts in enumerate(bm25.doc_freqs):
            for term, count in counts.items():
                freq[self.rows[term], doc] = count
        idf = np.array([bm25.idf[term] or 0 for term in self.rows])[:, None]
        doc_len = np.array(bm25.doc_len)
        self.weights = idf * (freq * (bm25.k1 + 1) / (freq + bm25.k1 * (1 - bm25.b + bm25.b * doc_len / bm25.avgdl)))
        self.size = bm25.corpus_size

    def scores(self, tokens: Iterable[str]) -> np.ndarray:
        """One float64 score per chunk (0 where no query word occurs); unknown words add nothing."""
        import numpy as np

        score = np.zeros(self.size)
        for token in tokens:
            row = self.rows.get(token)
            if row is not None:
                score += self.weights[row]
        return score


class KnowledgeIndex:
    """The KB's chunks, their vector store, a BM25 index and a query analyser."""

    def __init__(self, kb: KnowledgeBase, chunks: list[Chunk], vectors: np.ndarray, build: BuildInfo) -> None:
        import numpy as np
        from rank_bm25 import BM25Okapi

        self.kb = kb
        self.chunks = chunks
        self.build = build
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self._position = {c.id: i for i, c in enumerate(chunks)}
        self._by_condition: dict[str, list[str]] = {}
        for c in chunks:
            self._by_condition.setdefault(c.condition_id, []).append(c.id)
        self.store = _vector_store(chunks, self.vectors)
        # FAISS row -> chunk id, read from the store once (langchain's own search builds Documents per hit)
        self._faiss_ids = [self.store.index_to_docstore_id[i] for i in range(self.store.index.ntotal)]
        vocab = get_vocabulary()
        labels = build_label_index(kb, vocab)
        self._names: dict[str, str] = {}
        for entry in kb.entries.values():
            self._names[entry.condition_id] = " ".join(
                dict.fromkeys([entry.patient_name, entry.clinician_name, *entry.synonyms])
            )
        corpus = [
            tokenize(c.embed_text + (" " + self._names.get(c.condition_id, "") if BM25_SYNONYMS else ""))
            for c in chunks
        ]
        self.bm25 = BM25Okapi(corpus)
        self.bm25_matrix = BM25Matrix(self.bm25)
        name_words = [t for text in self._names.values() for t in tokenize(text)]
        self.analyzer = QueryAnalyzer(
            [*(w for doc in corpus for w in doc), *name_words], self._specific(labels), embeddings.common_words()
        )

    def _specific(self, labels: dict[str, str]) -> dict[str, str]:
        """Drop one-word names that the KB uses for many conditions ("spots", "hand"): they name none."""
        conditions_using: dict[str, set[str]] = {}
        for chunk in self.chunks:
            for token in set(tokenize(chunk.text)):
                conditions_using.setdefault(token, set()).add(chunk.condition_id)
        limit = GENERIC_LABEL_SHARE * max(1, len(self.kb.entries))
        out: dict[str, str] = {}
        for label, cid in labels.items():
            tokens = tokenize(label)
            if not tokens or (len(tokens) == 1 and len(conditions_using.get(tokens[0], ())) >= limit):
                continue
            out[label] = cid
        return out

    def __len__(self) -> int:
        return len(self.chunks)

    def chunk(self, chunk_id: str) -> Chunk:
        return self.chunks[self._position[chunk_id]]

    # -- retrieval ---------------------------------------------------------------------------------------------
    def _dense_ranking(self, vector: np.ndarray, k: int) -> list[str]:
        """Chunk ids by cosine similarity: an exact inner-product search in the store's FAISS index."""
        return self._dense_search(vector, k)[0]

    def _dense_search(self, vector: np.ndarray, k: int) -> tuple[list[str], float]:
        """Chunk ids by cosine similarity, and the best similarity (0 when the index is empty).

        The same search as ``store.similarity_search_with_score_by_vector`` without building a langchain
        ``Document`` per candidate, which was most of its cost for the 60 candidates fusion needs.
        """
        import numpy as np

        scores, rows = self.store.index.search(np.asarray(vector, dtype=np.float32).reshape(1, -1), k)
        ids = [self._faiss_ids[i] for i in rows[0] if i >= 0]
        return ids, float(scores[0][0]) if ids else 0.0

    def _bm25_ranking(self, query: str, k: int) -> list[str]:
        import numpy as np

        tokens = tokenize(query)
        if not tokens:
            return []
        scores = self.bm25_matrix.scores(tokens)
        top = np.argsort(-scores)[:k]
        return [self.chunks[i].id for i in top if scores[i] > 0]

    def analyze(self, question: str, audience: str | None = None) -> QueryAnalysis:
        return self.analyzer.analyze(question, audience)

    def search(
        self,
        question: str,
        *,
        k: int = 8,
        audience: str | None = None,
        differential: dict[str, float] | None = None,
        restrict_to: Iterable[str] | None = None,
        sections: Iterable[str] | None = None,
        analysis: QueryAnalysis | None = None,
        reuse_embedding: bool = True,
    ) -> SearchResult:
        """Fused ranking for ``question``.

        ``differential`` (condition -> probability) boosts those conditions; ``restrict_to`` keeps only those
        conditions (a follow-up about the current result); ``sections`` keeps only those sections.
        ``reuse_embedding=False`` embeds the question even if it was asked before (what ``eval-rag`` times).
        """
        start = time.perf_counter()
        timings: dict[str, float] = {}
        analysis = analysis or self.analyze(question, audience)
        mark = _lap(timings, "analyze", start)
        # Names and synonyms of the conditions the question names help the keyword side; the dense side gets
        # the (spell-corrected) question alone: expansions cost embedder time and measured no better recall.
        expansion = " ".join(self._names.get(c, "") for c in analysis.mentioned[:2])
        vector = embeddings.encode_query(analysis.corrected, cache=reuse_embedding)
        mark = _lap(timings, "embed", mark)
        dense, top_similarity = self._dense_search(vector, CANDIDATES)
        mark = _lap(timings, "dense", mark)
        keyword = self._bm25_ranking(f"{analysis.corrected} {expansion}".strip(), CANDIDATES)
        mark = _lap(timings, "bm25", mark)
        allowed = set(restrict_to) if restrict_to is not None else None
        dense_rank = {cid: r for r, cid in enumerate(dense)}
        bm25_rank = {cid: r for r, cid in enumerate(keyword)}
        candidates = self._candidates(dense, keyword, analysis.mentioned, allowed)
        base = self._fused_evidence(candidates, dense_rank, bm25_rank, allowed, sections)
        condition_score = self._condition_scores(base, set(analysis.mentioned), differential)
        scores = self._chunk_scores(base, condition_score, analysis, audience)
        ranked = sorted(scores, key=lambda cid: (-scores[cid], cid))[:k]
        hits = [
            Hit(chunk=self.chunk(cid), score=scores[cid], dense_rank=dense_rank.get(cid), bm25_rank=bm25_rank.get(cid))
            for cid in ranked
        ]
        _lap(timings, "fuse", mark)
        return SearchResult(
            hits=hits,
            analysis=analysis,
            elapsed_ms=(time.perf_counter() - start) * 1000,
            timings=timings,
            top_similarity=top_similarity,
        )

    def _candidates(
        self, dense: list[str], keyword: list[str], mentioned: list[str], allowed: set[str] | None
    ) -> set[str]:
        """Chunk ids worth scoring: both retrievers' lists, plus every chunk of a condition the question names or
        the follow-up is restricted to (so a named condition can never be missing from the answer)."""
        candidates = set(dense) | set(keyword)
        for cond in [*mentioned, *(allowed or ())]:
            candidates.update(self._by_condition.get(cond, ()))
        return candidates

    def _fused_evidence(
        self,
        candidates: set[str],
        dense_rank: dict[str, int],
        bm25_rank: dict[str, int],
        allowed: set[str] | None,
        sections: Iterable[str] | None,
    ) -> dict[str, float]:
        """Stage 1, evidence per chunk: reciprocal rank fusion of the two rankings, after the condition and
        section filters."""
        section_filter = set(sections) if sections is not None else None
        base: dict[str, float] = {}
        for chunk_id in candidates:
            chunk = self.chunk(chunk_id)
            if allowed is not None and chunk.condition_id not in allowed:
                continue
            if section_filter is not None and chunk.section not in section_filter:
                continue
            score = 0.0
            if chunk_id in dense_rank:
                score += W_DENSE / (RRF_K + dense_rank[chunk_id] + 1)
            if chunk_id in bm25_rank:
                score += W_BM25 / (RRF_K + bm25_rank[chunk_id] + 1)
            base[chunk_id] = score
        return base

    def _condition_scores(
        self, base: dict[str, float], mentioned: set[str], differential: dict[str, float] | None
    ) -> dict[str, float]:
        """Stage 2, evidence per condition: its best chunks, plus what the question (a condition it names) and the
        differential (the photo's probabilities) say."""
        per_condition: dict[str, list[float]] = {}
        for chunk_id, score in base.items():
            per_condition.setdefault(self.chunk(chunk_id).condition_id, []).append(score)
        condition_score: dict[str, float] = {}
        for cond, values in per_condition.items():
            values.sort(reverse=True)
            score = values[0] + SECOND_CHUNK * (values[1] if len(values) > 1 else 0.0)
            if cond in mentioned:
                score += BOOST_MENTIONED
            if differential:
                score += BOOST_DIFFERENTIAL * float(differential.get(cond, 0.0))
            condition_score[cond] = score
        return condition_score

    def _chunk_scores(
        self,
        base: dict[str, float],
        condition_score: dict[str, float],
        analysis: QueryAnalysis,
        audience: str | None,
    ) -> dict[str, float]:
        """Stage 3, the final score of each chunk: its condition's standing, then its own fit (the section asked
        about, the reader). Each condition's best-fitting chunk scores exactly the condition's score, so the section
        asked about picks *which* passage of a condition comes first but never which condition comes first."""
        fit = {chunk_id: self._fit(score, self.chunk(chunk_id), analysis, audience) for chunk_id, score in base.items()}
        best_fit: dict[str, float] = {}
        for chunk_id, value in fit.items():
            cond = self.chunk(chunk_id).condition_id
            best_fit[cond] = max(best_fit.get(cond, value), value)
        return {
            chunk_id: condition_score[self.chunk(chunk_id).condition_id]
            + CHUNK_WEIGHT * (value - best_fit[self.chunk(chunk_id).condition_id])
            for chunk_id, value in fit.items()
        }

    @staticmethod
    def _fit(score: float, chunk: Chunk, analysis: QueryAnalysis, audience: str | None) -> float:
        """A passage's evidence plus how well it fits the question beyond its topic: the section asked about, and
        its reader (a passage for this reader up, one for the other reader down, one for all neutral)."""
        value = score + BOOST_SECTION * analysis.sections.get(chunk.section, 0.0)
        if audience and chunk.audience == audience:
            value += BOOST_AUDIENCE
        elif audience and chunk.audience not in ("all", audience):
            value -= BOOST_AUDIENCE
        return value

    def as_retriever(self, **search_kwargs: Any) -> Any:
        """A langchain ``BaseRetriever`` over this index (for chains and agents)."""
        from dermchat.knowledge.retriever import KnowledgeRetriever

        return KnowledgeRetriever(index=self, search_kwargs=search_kwargs)


def _lap(timings: dict[str, float], stage: str, since: float) -> float:
    """Record the milliseconds since ``since`` as ``stage`` and return now (the next stage's start)."""
    now = time.perf_counter()
    timings[stage] = (now - since) * 1000
    return now


# -- building and caching ---------------------------------------------------------------------------------------
# A prebuilt copy of the index ships with the package so that a fresh install (a Space, CI) answers at once
# instead of embedding the whole KB on first use; it is used only while its key matches the KB on disk.
PACKAGED_INDEX = Path(__file__).resolve().parent.parent / "data" / "kb_index.npz"


def _packaged_vectors(key: str, chunks: list[Chunk]) -> np.ndarray | None:
    import numpy as np

    if not PACKAGED_INDEX.exists():
        return None
    try:
        with np.load(PACKAGED_INDEX, allow_pickle=False) as data:
            if str(data["key"]) != key:
                return None
    except (OSError, KeyError, ValueError):
        return None
    return _load_vectors(PACKAGED_INDEX, chunks)


def write_packaged_index(kb: KnowledgeBase | None = None) -> Path:
    """Rebuild ``dermchat/data/kb_index.npz`` after editing the KB (``python -m dermchat.knowledge.index``)."""
    import numpy as np

    kb = kb or get_kb()
    chunks = build_chunks(kb)
    vectors = embeddings.encode([c.embed_text for c in chunks])
    np.savez_compressed(
        PACKAGED_INDEX,
        key=np.array(cache_key(kb)),
        ids=np.array([c.id for c in chunks]),
        vectors=vectors.astype(np.float32),
    )
    return PACKAGED_INDEX


def _cache_file(key: str) -> Path:
    folder = cache_dir() / "kb-index"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{key}.npz"


def _load_vectors(path: Path, chunks: list[Chunk]) -> np.ndarray | None:
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as data:
            ids = [str(x) for x in data["ids"]]
            vectors: np.ndarray = data["vectors"]
    except (OSError, KeyError, ValueError) as exc:
        log.warning("ignoring unreadable index cache %s: %s", path, exc)
        return None
    if ids != [c.id for c in chunks] or vectors.shape[0] != len(chunks):
        return None
    return vectors


def _save_vectors(path: Path, chunks: list[Chunk], vectors: np.ndarray) -> None:
    """Atomic write (temp file + rename) so a crash or a concurrent process never leaves half a cache."""
    import numpy as np

    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp.npz")
    os.close(fd)
    try:
        np.savez(tmp, ids=np.array([c.id for c in chunks]), vectors=vectors.astype(np.float32))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def build_index(
    kb: KnowledgeBase | None = None, *, use_cache: bool = True, use_packaged: bool = True
) -> KnowledgeIndex:
    """Chunk the KB and embed it (or load the embeddings from the packaged index or the disk cache)."""
    start = time.perf_counter()
    kb = kb or get_kb()
    chunks = build_chunks(kb)
    key = cache_key(kb)
    path = _cache_file(key)
    vectors = _packaged_vectors(key, chunks) if use_cache and use_packaged else None
    if vectors is None and use_cache and path.exists():
        vectors = _load_vectors(path, chunks)
    from_cache = vectors is not None
    if vectors is None:
        vectors = embeddings.encode([c.embed_text for c in chunks])
        if use_cache:
            _save_vectors(path, chunks, vectors)
    info = BuildInfo(cache_key=key, cache_path=str(path), from_cache=from_cache, seconds=0.0, chunks=len(chunks))
    index = KnowledgeIndex(kb, chunks, vectors, info)
    info.seconds = round(time.perf_counter() - start, 3)
    return index


_lock = threading.Lock()
_indexes: dict[Path, KnowledgeIndex] = {}


def get_index(kb_dir: Path | None = None) -> KnowledgeIndex:
    """The process-wide index for ``kb_dir``; rebuilt (or re-loaded from cache) when a KB file changes."""
    kb = get_kb(kb_dir)
    key = kb.kb_dir.resolve()
    current = _indexes.get(key)
    if current is not None and current.kb is kb:
        return current
    with _lock:
        current = _indexes.get(key)
        if current is None or current.kb is not kb:
            current = build_index(kb)
            _indexes[key] = current
        return current


if __name__ == "__main__":
    print(f"wrote {write_packaged_index()}")
