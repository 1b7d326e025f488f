"""Sources are listed once per page, and a run of sentences backed by the same sources is cited once."""

from __future__ import annotations

import itertools
import re
from typing import Any

from knowledge_fixtures import kb_index  # noqa: F401 - pytest fixture
from test_knowledge_answers import SENTENCE_WITH_MARKERS, cited_sentences, diagnosis

from dermchat.knowledge.answer import answer, diagnosis_focus
from dermchat.render import source_links


def test_one_source_per_page_and_one_citation_per_claim(kb_index: Any) -> None:
    dx = diagnosis({"melanocytic_nevus": 0.6, "melanoma": 0.4}, ["melanocytic_nevus", "melanoma"])
    explanation = answer(kb_index, "", "patient", dx, focus=diagnosis_focus(dx))
    urls = [c.url for c in explanation.citations]
    assert len(urls) == len(set(urls)), f"the same page listed twice: {urls}"
    titles = [link.split(" ", 1)[1].split("](")[0] for link in source_links(explanation)]
    assert len(titles) == len(set(titles)), titles
    cited_sentences(explanation)  # every sentence still ends in (or belongs to a run ending in) markers
    for paragraph in explanation.text.split("\n\n"):
        groups = [tuple(re.findall(r"\[\d+\]", piece)) for piece in SENTENCE_WITH_MARKERS.findall(paragraph)]
        repeats = [a for a, b in itertools.pairwise(groups) if a == b]
        assert not repeats, f"the same markers on consecutive sentences: {paragraph!r}"
    # Merging runs keeps the sentences: the overview still has several of them.
    assert len(re.findall(r"[.!?](?:\s|$)", explanation.text)) >= 4
