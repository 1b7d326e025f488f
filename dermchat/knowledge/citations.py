"""Numbered citation markers for one answer: ``[n]`` -> source title + URL, condition and section.

One marker per (source, condition): the same page cited for two conditions gets two markers, so a reader
(or a study rater) sees which condition's facts it backs, while one page is not listed once per section.
``Citation.section`` is the first section the marker was used for.
"""

from __future__ import annotations

import re

from dermchat.knowledge.kb import KnowledgeBase, Statement
from dermchat.results import Citation

MARKER_RE = re.compile(r"\[(\d+)\]")


class CitationBook:
    def __init__(self, kb: KnowledgeBase) -> None:
        self.kb = kb
        self._markers: dict[tuple[str, str], str] = {}
        self.citations: list[Citation] = []

    def marker(self, condition_id: str, section: str, source_id: str) -> str:
        key = (source_id, condition_id)
        if key not in self._markers:
            source = self.kb.source(condition_id, source_id)
            marker = f"[{len(self.citations) + 1}]"
            self._markers[key] = marker
            self.citations.append(
                Citation(marker=marker, source_id=source_id, title=source.title, url=source.url,
                         condition_id=condition_id, section=section)
            )
        return self._markers[key]

    def cite(self, condition_id: str, section: str, statement: Statement) -> str:
        """The statement's text followed by its markers (``"Text. [1][2]"``)."""
        markers = "".join(self.marker(condition_id, section, sid) for sid in statement.source_ids)
        return f"{statement.text} {markers}".strip()
