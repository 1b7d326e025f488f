"""The knowledge index behind langchain's retriever interface, so it plugs into chains unchanged.

Kept in its own module because ``langchain_core.retrievers`` costs about two seconds to import; only code
that wants a langchain retriever pays for it.
"""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field


class KnowledgeRetriever(BaseRetriever):
    """Hybrid (dense + BM25, rank-fused, differential-boosted) retrieval returning langchain Documents."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    index: Any
    search_kwargs: dict[str, Any] = Field(default_factory=dict)

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        result = self.index.search(query, **self.search_kwargs)
        return [
            Document(
                id=hit.chunk.id,
                page_content=hit.chunk.text,
                metadata={
                    "condition_id": hit.chunk.condition_id,
                    "section": hit.chunk.section,
                    "audience": hit.chunk.audience,
                    "source_ids": list(hit.chunk.source_ids),
                    "score": hit.score,
                },
            )
            for hit in result.hits
        ]
