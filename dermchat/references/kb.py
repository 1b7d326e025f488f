"""Reading the knowledge base's condition files defensively (they are written by another team member).

Why here and not in the explainer: the reference step needs only the "How it looks" section (features for
prompts and the contrast gallery) and its sources; parsing that directly keeps the reference plugins free of
the retrieval stack. Every function returns something sensible (empty lists) when a file or section is
missing or oddly formatted.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from dermchat.paths import DATA_PACKAGE_DIR

KB_DIR = DATA_PACKAGE_DIR / "kb"
HOW_IT_LOOKS = "how it looks"

_LINK = re.compile(r"\[([^\]]+)\]\((?:[^)]+)\)")
_URL = re.compile(r"\(?<?https?://\S+>?\)?")
_MARKER = re.compile(r"\[\d+(?:[,\s]*\d+)*\]|\[\^[^\]]+\]|\[[a-z0-9][a-z0-9_.:-]*\]")  # [1], [^1], [aad-melanoma]
_EMPHASIS = re.compile(r"[*_`]+")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


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


def kb_section(markdown: str, title: str) -> list[tuple[str, str]]:
    """The lines under the first heading containing ``title`` (any level) until a heading of the same or a
    higher level, as ``(subheading, line)`` pairs; subheading is '' before the first sub-heading."""
    lines = markdown.splitlines()
    out: list[tuple[str, str]] = []
    level: int | None = None
    sub = ""
    for line in lines:
        match = _HEADING.match(line.strip())
        if match:
            depth, text = len(match.group(1)), match.group(2).lower()
            if level is None:
                if title in text:
                    level = depth
                continue
            if depth <= level:
                break
            sub = text
            continue
        if level is not None and line.strip():
            out.append((sub, line.strip()))
    return out


def _audience_lines(pairs: list[tuple[str, str]], audience: str) -> list[str]:
    """Prefer the audience's own sub-section ('For patients' / 'For clinicians') when the KB has one."""
    own = [line for sub, line in pairs if audience in sub]
    if own:
        return own
    other = "clinician" if audience == "patient" else "patient"
    return [line for sub, line in pairs if other not in sub] or [line for _, line in pairs]


def read_kb(condition_id: str, kb_dir: Path | None = None) -> str:
    """The markdown of ``<kb>/<id>.md`` or '' when there is none."""
    path = (kb_dir or KB_DIR) / f"{condition_id}.md"
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""


def front_matter(markdown: str) -> dict[str, Any]:
    """The YAML block between leading ``---`` lines ({} when absent or invalid)."""
    match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", markdown, flags=re.S)
    if not match:
        return {}
    import yaml

    try:
        data = yaml.safe_load(match.group(1))
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def how_it_looks(condition_id: str, audience: str = "clinician", kb_dir: Path | None = None) -> list[str]:
    """Features from ``<kb>/<id>.md`` "How it looks": bullet items (or sentences), cleaned; [] if absent."""
    markdown = read_kb(condition_id, kb_dir)
    if not markdown:
        return []
    lines = _audience_lines(kb_section(markdown, HOW_IT_LOOKS), audience)
    items: list[str] = []
    for line in lines:
        if line.startswith((">", "|", "<!--")):
            continue
        bullet = re.match(r"^(?:[-*+•]|\d+[.)])\s+(.*)$", line)
        text = clean_markdown(bullet.group(1) if bullet else line)
        if not text or text.lower().startswith(("source", "sources")):
            continue
        items.extend([text] if bullet else [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if s.strip()])
    return items




def section_sources(condition_id: str, audience: str = "clinician", kb_dir: Path | None = None) -> list[dict[str, str]]:
    """Sources (id, title, url) cited in the "How it looks" section, from the file's front matter."""
    markdown = read_kb(condition_id, kb_dir)
    if not markdown:
        return []
    raw = " ".join(_audience_lines(kb_section(markdown, HOW_IT_LOOKS), audience))
    cited = re.findall(r"\[([a-z0-9][a-z0-9_.:-]*)\]", raw)
    known = {
        str(item.get("id")): item for item in front_matter(markdown).get("sources", []) or [] if isinstance(item, dict)
    }
    out: list[dict[str, str]] = []
    for source_id in dict.fromkeys(cited):
        item = known.get(source_id)
        if item and item.get("url"):
            out.append({"id": source_id, "title": str(item.get("title", source_id)), "url": str(item["url"])})
    return out
