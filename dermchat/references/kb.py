"""Knowledge-base features for the reference step: "How it looks" sentences and their sources.

The reference step needs only this one section (features for concept prompts and the contrast gallery);
it reads it through the same parser as the retrieval stack (``dermchat.knowledge.kb``) so there is one
reading of the KB format, then cleans the sentences for prompts and captions. Every function returns an
empty list when the KB or the condition is missing, so reference images never fail on a KB problem.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from dermchat.knowledge.kb import KBEntry, KBError, get_kb

log = logging.getLogger(__name__)

_LINK = re.compile(r"\[([^\]]+)\]\((?:[^)]+)\)")
_URL = re.compile(r"\(?<?https?://\S+>?\)?")
_MARKER = re.compile(r"\[\d+(?:[,\s]*\d+)*\]|\[\^[^\]]+\]|\[[a-z0-9][a-z0-9_.:-]*\]")  # [1], [^1], [aad-melanoma]
_EMPHASIS = re.compile(r"[*_`]+")


def clean_markdown(text: str) -> str:
    """Plain text: links to their words, URLs and citation markers dropped, emphasis removed."""
    text = _LINK.sub(r"\1", text)
    text = _URL.sub("", text)
    text = _MARKER.sub("", text)
    text = _EMPHASIS.sub("", text)
    text = re.sub(r"\(\s*(source|sources|see)\s*:?\s*\)", "", text, flags=re.I)
    text = re.sub(r"\s+", " ", text)
    text = re.sub(r"\s+([.,;:!?)])", r"\1", text)  # a removed marker leaves "dermoscopy ."
    return text.strip(" -•\t")


def _entry(condition_id: str, kb_dir: Path | None) -> KBEntry | None:
    """The parsed KB entry, or ``None`` when the KB cannot be read or has no such condition."""
    try:
        return get_kb(kb_dir).entries.get(condition_id)
    except (KBError, OSError) as exc:
        log.warning("knowledge base unreadable for reference features: %s", exc)
        return None


def how_it_looks(condition_id: str, audience: str = "clinician", kb_dir: Path | None = None) -> list[str]:
    """Features from the condition's "How it looks" section for ``audience``, as clean sentences; [] if absent."""
    entry = _entry(condition_id, kb_dir)
    if entry is None:
        return []
    sentences = (clean_markdown(s.text) for p in entry.section("how_it_looks", audience) for s in p.statements)
    return [text for text in sentences if text]


def section_sources(condition_id: str, audience: str = "clinician", kb_dir: Path | None = None) -> list[dict[str, str]]:
    """Sources (id, title, url) cited in the "How it looks" section for ``audience``."""
    entry = _entry(condition_id, kb_dir)
    if entry is None:
        return []
    cited = dict.fromkeys(sid for p in entry.section("how_it_looks", audience) for sid in p.source_ids)
    return [
        {"id": src.id, "title": src.title, "url": src.url}
        for sid in cited
        if (src := entry.sources.get(sid)) is not None
    ]
