"""Numbered citation markers for one answer: ``[n]`` -> source title + URL, condition and section.

One marker per page (URL): a page that backs facts about two conditions (the melanoma overview cited under
melanoma and under moles) is listed once, not as ``[1]`` and ``[5]`` with the same title.
``Citation.condition_id`` and ``section`` are where the marker was first used. Within a paragraph a run of
sentences backed by the same sources is cited once, after its last sentence (one citation per claim, not the
same pair of markers on every sentence).
"""

from __future__ import annotations

import re

from dermchat.knowledge.kb import KnowledgeBase, Statement
from dermchat.results import Citation

MARKER_RE = re.compile(r"\[(\d+)\]")


class CitationBook:
    def __init__(self, kb: KnowledgeBase) -> None:
        self.kb = kb
        self._markers: dict[str, str] = {}
        self.citations: list[Citation] = []

    def marker(self, condition_id: str, section: str, source_id: str) -> str:
        source = self.kb.source(condition_id, source_id)
        key = source.url or f"{condition_id}/{source_id}"
        if key not in self._markers:
            marker = f"[{len(self.citations) + 1}]"
            self._markers[key] = marker
            self.citations.append(
                Citation(
                    marker=marker,
                    source_id=source_id,
                    title=source.title,
                    url=source.url,
                    condition_id=condition_id,
                    section=section,
                )
            )
        return self._markers[key]

    def cite(self, condition_id: str, section: str, statement: Statement) -> str:
        """The statement's text followed by its markers (``"Text. [1][2]"``)."""
        markers = "".join(self.marker(condition_id, section, sid) for sid in statement.source_ids)
        return f"{statement.text} {markers}".strip()

    def cite_run(self, condition_id: str, items: list[tuple[str, Statement]]) -> str:
        """Sentences of one paragraph, each run of sentences with the same sources cited once at its end."""
        pieces = [
            (statement.text, "".join(self.marker(condition_id, section, sid) for sid in statement.source_ids))
            for section, statement in items
        ]
        out = []
        for i, (text, markers) in enumerate(pieces):
            same_as_next = i + 1 < len(pieces) and pieces[i + 1][1] == markers
            out.append(text if same_as_next or not markers else f"{text} {markers}")
        return " ".join(out)
