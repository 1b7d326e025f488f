"""The explainer ``kb-rag``: cited answers from DermChat's knowledge base, for patients and clinicians.

Retrieval is hybrid (MiniLM embeddings in a langchain vector store + BM25, rank-fused, boosted by the
current differential); answers are extractive by default and can be written by a text generator (a local
transformers model or an OpenAI-compatible server), in which case every sentence is grounding-checked
against the passage it cites. The work lives in :mod:`dermchat.knowledge`; this module adapts it to the
provider contract. Nothing heavy is imported until ``load()``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from dermchat.context import TurnContext
from dermchat.hookspecs import hookimpl
from dermchat.providers import Explainer, ProviderError
from dermchat.results import Explanation

PROVIDER_ID = "kb-rag"


class KnowledgeExplainer(Explainer):
    """Explains a differential, answers follow-ups, and lists conditions to consider when there is none."""

    id = PROVIDER_ID
    label = "Knowledge base with citations (RAG)"
    version = "1.0"
    needs_gpu = False
    description = (
        "Hybrid retrieval (all-MiniLM-L6-v2 + BM25, reciprocal rank fusion) over DermChat's cited knowledge base; "
        "extractive answers offline, optional grounded generation."
    )

    class Options(BaseModel):
        model_config = ConfigDict(extra="forbid")
        generator: Literal["none", "transformers", "openai"] = Field(
            "none", description="who writes the answer: 'none' = extractive quotes from the KB"
        )
        generator_model: str | None = Field(None, description="model id/path (transformers) or served name (openai)")
        base_url: str | None = Field(None, description="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1")
        api_key_env: str | None = Field("OPENAI_API_KEY", description="environment variable holding the API key")
        generator_options: dict[str, Any] = Field(
            default_factory=dict, description="extra options for the generator (device, dtype, timeout_s, ...)"
        )
        top_k: int = Field(6, ge=1, le=20, description="passages retrieved per question")
        grounding_threshold: float = Field(
            0.6, ge=0, le=1, description="min cosine similarity between a generated sentence and its cited passage"
        )
        grounding_action: Literal["remove", "mark"] = Field(
            "remove", description="what happens to unsupported sentences"
        )
        max_new_tokens: int = Field(256, ge=16, le=2048)
        kb_dir: str | None = Field(None, description="knowledge-base folder (default: the packaged one)")

    def __init__(self) -> None:
        super().__init__()
        self._index: Any = None
        self._generator: Any = None

    def available(self) -> tuple[bool, str]:
        from dermchat.knowledge.embeddings import model_available
        from dermchat.knowledge.kb import KB_DIR, kb_files

        kb_dir = Path(self.options.kb_dir) if self.options.kb_dir else KB_DIR  # type: ignore[attr-defined]
        if not kb_files(kb_dir):
            return False, f"no knowledge-base files in {kb_dir}"
        return model_available()

    def _load(self) -> None:
        from dermchat.knowledge import embeddings
        from dermchat.knowledge.index import get_index

        opts = self.options
        self.report_load("Loading the knowledge base index…", 0.1)
        self._index = get_index(Path(opts.kb_dir) if opts.kb_dir else None)  # type: ignore[attr-defined]
        # The packaged index needs no embedder, but every question does: load it now, not in the first turn.
        self.report_load("Loading the embedding model…", 0.6)
        embeddings.get_query_encoder()
        self._generator = self._make_generator()

    def _make_generator(self) -> Any:
        opts = self.options
        if opts.generator == "none":  # type: ignore[attr-defined]
            return None
        from dermchat.vlm.textgen import make_text_generator

        options = dict(opts.generator_options)  # type: ignore[attr-defined]
        if opts.generator == "openai":  # type: ignore[attr-defined]
            options.setdefault("base_url", opts.base_url)  # type: ignore[attr-defined]
            options.setdefault("api_key_env", opts.api_key_env)  # type: ignore[attr-defined]
        if not opts.generator_model:  # type: ignore[attr-defined]
            raise ProviderError(f"kb-rag: generator {opts.generator!r} needs 'generator_model'")  # type: ignore[attr-defined]
        return make_text_generator(opts.generator, opts.generator_model, **options)  # type: ignore[attr-defined]

    def explain(self, ctx: TurnContext) -> Explanation:
        self.load()
        from dermchat.knowledge.answer import AnswerSettings
        from dermchat.knowledge.explain import explain_turn
        from dermchat.knowledge.index import get_index

        opts = self.options
        # get_index is cheap when nothing changed, and picks up an edited KB without a restart
        index = get_index(Path(opts.kb_dir) if opts.kb_dir else None)  # type: ignore[attr-defined]
        settings = AnswerSettings(
            top_k=opts.top_k,  # type: ignore[attr-defined]
            grounding_threshold=opts.grounding_threshold,  # type: ignore[attr-defined]
            grounding_action=opts.grounding_action,  # type: ignore[attr-defined]
            max_new_tokens=opts.max_new_tokens,  # type: ignore[attr-defined]
        )
        return explain_turn(ctx, index, settings, self._generator)


def benchmark(options: dict[str, Any]) -> dict[str, Any]:
    """Retrieval latency and recall@3 on the dev (tuned-on) and held-out questions, and the index build time."""
    from dermchat.knowledge.evaluate import QUESTION_SETS, evaluate, load_questions, measure_build

    dev = evaluate(load_questions(QUESTION_SETS["dev"][0]))
    heldout = evaluate(load_questions(QUESTION_SETS["heldout"][0]))
    return {
        "retrieval_ms": dev["latency_ms"],
        "retrieval_stages_ms": dev["latency_stages_ms"],
        "condition_recall@3": dev["condition"]["recall@3"],
        "heldout_condition_recall@3": heldout["condition"]["recall@3"],
        "index_build_s": measure_build(),
        "load_average": dev["load_average"],
        "note": dev["latency_note"],
    }


@hookimpl
def register_explainers(register: Callable[[Explainer], None]) -> None:
    register(KnowledgeExplainer())


@hookimpl
def register_benchmarks(register: Callable[[str, Callable[[dict[str, Any]], dict[str, Any]]], None]) -> None:
    register("kb-rag retrieval", benchmark)
