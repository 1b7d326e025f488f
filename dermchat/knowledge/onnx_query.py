"""The MiniLM question embedding on ONNX Runtime: same weights, same vectors, about half the CPU time.

Why: a chat question is ~15 word pieces, so the 24 matrix products of the 6 BERT layers run with 15-row inputs
and torch runs every small op on its own. ONNX Runtime packs the constant weights once when the session is
created, its kernels handle these thin products better, and its graph optimiser fuses attention, GELU and the
layer norms.

The graph is ``torch.onnx.export`` of :meth:`QueryEncoder.embed_ids` (the same forward the torch path runs,
over the loaded SentenceTransformer's weights) for one unpadded question: token ids in, the sentence vector out.
It is exported once into the cache folder, under a name made from the model package's and torch's versions
and the forward's code, and later processes only load the file (0.15 s instead of 2 s to build the graph by
hand); nothing is fetched.
Exporting the whole SentenceTransformer instead was about 10 % slower per question (separate Q/K/V products and
the attention-mask arithmetic). ``onnx`` and ``onnxruntime`` are optional: without them (or if the export
fails) the torch path serves, with the same vectors.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from dermchat.knowledge.embeddings import word_piece_ids
from dermchat.onnx_support import OPSET, cpu_session, export_atomically

if TYPE_CHECKING:
    import numpy as np

    from dermchat.knowledge.embeddings import QueryEncoder

log = logging.getLogger(__name__)


def available() -> tuple[bool, str]:
    """Whether the ONNX Runtime path can be built here, and why not."""
    missing = [name for name in ("onnx", "onnxruntime") if importlib.util.find_spec(name) is None]
    if missing:
        return False, "not installed: " + ", ".join(missing)
    return True, ""


def graph_path() -> Path:
    """Where the graph of this model, torch version and forward code lives (in ``dermchat.paths.cache_dir()``)."""
    import hashlib
    import inspect
    import re

    import torch

    from dermchat.knowledge.embeddings import QueryEncoder, model_version
    from dermchat.paths import cache_dir

    code = hashlib.sha256(inspect.getsource(QueryEncoder).encode()).hexdigest()[:10]  # a changed forward re-exports
    name = re.sub(r"[^A-Za-z0-9.]+", "-", f"{model_version()}-torch{torch.__version__}-opset{OPSET}-{code}")
    return cache_dir() / "onnx" / f"{name}.onnx"


def export_graph(encoder: QueryEncoder, path: Path) -> Path:
    """Export ``encoder``'s torch forward for one question of ``n`` word pieces to ``path``, atomically."""
    import torch

    class OneQuestion(torch.nn.Module):
        """ids (n,) -> the sentence vector: :meth:`QueryEncoder.embed_ids` (fused Q/K/V, no padding, no mask)."""

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return encoder.embed_ids(ids)

    example = torch.tensor(encoder.token_ids("what is this spot?"))
    # another process may export at the same time: each file is whole
    export_atomically(
        OneQuestion(), (example,), path, input_names=["ids"], output_names=["vector"], dynamic_axes={"ids": {0: "n"}}
    )
    log.info("exported the question encoder to %s", path)
    return path


class OnnxQueryEncoder:
    """``text -> vector`` like :class:`QueryEncoder` (same tokenizer, same weights), run by ONNX Runtime."""

    def __init__(self, encoder: QueryEncoder, threads: int | None = None) -> None:
        import torch

        self.tokenizer, self.max_tokens = encoder.tokenizer, encoder.max_tokens
        # follow torch's thread setting so `--threads` and the app's own setting mean the same thing
        threads = threads or torch.get_num_threads()
        path = graph_path()
        if not path.exists():
            export_graph(encoder, path)
        try:
            self.session = cpu_session(path, threads)
        except Exception as exc:  # noqa: BLE001 - a damaged cache file: export it again, once
            log.warning("re-exporting the question encoder (%s could not be loaded: %s)", path, exc)
            export_graph(encoder, path)
            self.session = cpu_session(path, threads)

    def token_ids(self, text: str) -> list[int]:
        return word_piece_ids(self.tokenizer, text, self.max_tokens)

    def __call__(self, text: str) -> np.ndarray:
        """The L2-normalised float32 embedding of ``text`` (shape ``(384,)``)."""
        import numpy as np

        ids = np.asarray(self.token_ids(text), dtype=np.int64)
        vector: np.ndarray = self.session.run(["vector"], {"ids": ids})[0].astype(np.float32, copy=False)
        return vector
