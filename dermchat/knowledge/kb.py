"""Parse and validate the knowledge base: ``dermchat/data/kb/<condition_id>.md``, one file per condition.

Why a strict format: every sentence shown to a user must be traceable to a source URL, and retrieval needs
to know which condition, section and audience a piece of text belongs to. A file is YAML front matter
(``id``, ``names: {patient, clinician}``, ``synonyms``, ``icd10``, ``sources: [{id, title, url}]``) and then
``## `` sections in a fixed order; a section may hold ``### For patients`` / ``### For clinicians`` blocks.
Sentences (or whole paragraphs / list items) end with citation markers such as ``[aad-melanoma]`` naming
front-matter source ids. Parsing is lenient (it keeps what it can read); ``validate_kb`` lists every problem.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from dermchat.paths import DATA_PACKAGE_DIR
from dermchat.vocabulary import Vocabulary, get_vocabulary, normalise_label

KB_DIR = DATA_PACKAGE_DIR / "kb"

PassageAudience = Literal["all", "patient", "clinician"]

# Section ids in the fixed order of a KB file, with their headings.
SECTIONS: dict[str, str] = {
    "what_it_is": "What it is",
    "how_it_looks": "How it looks",
    "who_gets_it": "Who gets it",
    "on_darker_skin": "On darker skin",
    "red_flags": "Red flags",
    "self_care": "Self-care",
    "when_to_see_a_clinician": "When to see a clinician",
    "clinician_notes": "Clinician notes",
}
SECTION_ALIASES: dict[str, str] = {
    "what": "what_it_is",
    "overview": "what_it_is",
    "looks": "how_it_looks",
    "appearance": "how_it_looks",
    "who": "who_gets_it",
    "darker_skin": "on_darker_skin",
    "skin_of_colour": "on_darker_skin",
    "skin_of_color": "on_darker_skin",
    "selfcare": "self_care",
    "when_to_see": "when_to_see_a_clinician",
    "see_a_clinician": "when_to_see_a_clinician",
    "when_to_see_a_doctor": "when_to_see_a_clinician",
    "clinician": "clinician_notes",
}
AUDIENCE_HEADINGS: dict[str, PassageAudience] = {"for patients": "patient", "for clinicians": "clinician"}

_MARKER = re.compile(r"\[([A-Za-z0-9][A-Za-z0-9_.:-]*(?:\s*[,;]\s*[A-Za-z0-9][A-Za-z0-9_.:-]*)*)\](?!\()")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")
_ABBREVIATIONS = ("e.g.", "i.e.", "etc.", "vs.", "dr.", "approx.", "incl.", "cf.", "st.", "no.", "fig.")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")


class KBError(ValueError):
    """A knowledge-base file that cannot be read at all (no front matter, bad YAML)."""


def section_id(name: str) -> str | None:
    """Map a heading or id ('Self-care', 'self_care', 'When to see a doctor') onto a section id, or ``None``."""
    key = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    if key in SECTIONS:
        return key
    if key in SECTION_ALIASES:
        return SECTION_ALIASES[key]
    for sid, heading in SECTIONS.items():
        if re.sub(r"[^a-z0-9]+", "_", heading.lower()).strip("_") == key:
            return sid
    return None


@dataclass(frozen=True)
class Source:
    id: str
    title: str
    url: str


@dataclass(frozen=True)
class Statement:
    """One sentence with the sources its citation marker(s) name (empty when the text is uncited)."""

    text: str
    source_ids: tuple[str, ...]


class CitedText:
    """Text made of cited statements: shared by KB passages and the retrieval chunks built from them."""

    statements: tuple[Statement, ...]

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.statements)

    @property
    def source_ids(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(sid for s in self.statements for sid in s.source_ids))


@dataclass(frozen=True)
class Passage(CitedText):
    """One paragraph or list item of a section, for one audience ('all' when the section is not split)."""

    condition_id: str
    section: str
    audience: PassageAudience
    statements: tuple[Statement, ...]
    is_list_item: bool = False

    def for_audience(self, audience: str) -> bool:
        """Whether this passage is meant for ``audience`` ('all' passages are for everyone)."""
        return self.audience == "all" or self.audience == audience


@dataclass
class KBEntry:
    """One condition's file, parsed."""

    condition_id: str
    path: Path
    patient_name: str
    clinician_name: str
    synonyms: tuple[str, ...]
    icd10: str | None
    sources: dict[str, Source]
    passages: list[Passage] = field(default_factory=list)
    section_order: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def section(self, section: str, audience: str | None = None) -> list[Passage]:
        return [p for p in self.passages if p.section == section and (audience is None or p.for_audience(audience))]

    def name(self, audience: str) -> str:
        return self.clinician_name if audience == "clinician" else self.patient_name


@dataclass
class KnowledgeBase:
    entries: dict[str, KBEntry]
    kb_dir: Path
    digest: str

    def __contains__(self, condition_id: object) -> bool:
        return condition_id in self.entries

    def get(self, condition_id: str) -> KBEntry:
        try:
            return self.entries[condition_id]
        except KeyError:
            raise KeyError(f"no knowledge-base entry for {condition_id!r}") from None

    def passages(self) -> Iterator[Passage]:
        for entry in self.entries.values():
            yield from entry.passages

    def source(self, condition_id: str, source_id: str) -> Source:
        return self.get(condition_id).sources[source_id]


# -- parsing ------------------------------------------------------------------------------------------------
def _split_front_matter(text: str, path: Path) -> tuple[dict[str, Any], str]:
    text = text.lstrip("\ufeff")
    if not text.startswith("---"):
        raise KBError(f"{path.name}: no YAML front matter (the file must start with '---')")
    parts = text.split("\n---", 1)
    if len(parts) != 2:
        raise KBError(f"{path.name}: front matter is not closed by a '---' line")
    try:
        meta = yaml.safe_load(parts[0][3:]) or {}
    except yaml.YAMLError as exc:
        raise KBError(f"{path.name}: front matter is not valid YAML: {exc}") from exc
    if not isinstance(meta, dict):
        raise KBError(f"{path.name}: front matter must be a mapping")
    body = parts[1].split("\n", 1)[1] if "\n" in parts[1] else ""
    return meta, body


def split_sentences(text: str) -> list[str]:
    """Sentence split that keeps 'e.g.' and 'vs.' inside their sentence."""
    protected = text
    for i, abbr in enumerate(_ABBREVIATIONS):
        protected = re.sub(r"(?<![A-Za-z])" + re.escape(abbr), f"\x00{i}\x00", protected, flags=re.IGNORECASE)
    pieces = _SENTENCE_END.split(protected)
    out = []
    for piece in pieces:
        for i, abbr in enumerate(_ABBREVIATIONS):
            piece = piece.replace(f"\x00{i}\x00", abbr)
        if piece.strip():
            out.append(piece.strip())
    return out


def parse_statements(block: str) -> list[Statement]:
    """Split a paragraph into sentences; each takes the marker(s) that follow it or close its segment.

    ``"A. B [s1]. C [s2]."`` gives A and B cited by s1 (a paragraph-level marker covers the sentences
    before it) and C cited by s2. Text after the last marker is returned uncited so validation can flag it.
    """
    segments: list[tuple[str, list[str]]] = []
    pos = 0
    for match in _MARKER.finditer(block):
        ids = [part.strip() for part in re.split(r"[,;]", match.group(1)) if part.strip()]
        end = match.end()
        trail = re.match(r"[.!?;:,]*", block[end:])
        trail_text = trail.group() if trail else ""
        end += len(trail_text)
        text = block[pos : match.start()].rstrip()
        if text.strip() and text.strip() not in ".!?;:,":
            if trail_text and not text.endswith(tuple(".!?")):
                text += trail_text
            segments.append((text.strip(), ids))
        elif segments:  # "[a] [b]." : the second marker (and the full stop after it) close the same text
            previous_text, previous_ids = segments[-1]
            if trail_text and not previous_text.endswith(tuple(".!?")):
                previous_text += trail_text
            segments[-1] = (previous_text, previous_ids + ids)
        pos = end
    tail = block[pos:].strip()
    if tail and tail.strip(".!?;:, "):
        segments.append((tail, []))
    statements: list[Statement] = []
    for text, ids in segments:
        unique = tuple(dict.fromkeys(ids))
        for sentence in split_sentences(text):
            statements.append(Statement(text=sentence, source_ids=unique))
    return statements


def _blocks(lines: list[str]) -> Iterator[tuple[str, bool]]:
    """Paragraphs (joined lines) and list items (one block each), as ``(text, is_list_item)``."""
    current: list[str] = []
    current_is_item = False

    def flush() -> Iterator[tuple[str, bool]]:
        if current:
            yield " ".join(part.strip() for part in current).strip(), current_is_item

    for line in lines:
        if not line.strip():
            yield from flush()
            current, current_is_item = [], False
        elif _LIST_ITEM.match(line):
            yield from flush()
            current, current_is_item = [_LIST_ITEM.sub("", line, count=1)], True
        else:
            current.append(line)
    yield from flush()


def _as_names(meta: dict[str, Any], path: Path, problems: list[str]) -> tuple[str, str]:
    names = meta.get("names")
    if not isinstance(names, dict) or not names.get("patient") or not names.get("clinician"):
        problems.append(f"{path.name}: front matter 'names' needs both 'patient' and 'clinician'")
        names = names if isinstance(names, dict) else {}
    patient = str(names.get("patient") or names.get("clinician") or path.stem)
    clinician = str(names.get("clinician") or patient)
    return patient, clinician


def _as_sources(meta: dict[str, Any], path: Path, problems: list[str]) -> dict[str, Source]:
    sources: dict[str, Source] = {}
    raw = meta.get("sources")
    if not isinstance(raw, list) or not raw:
        problems.append(f"{path.name}: front matter 'sources' must be a non-empty list")
        return sources
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or not all(item.get(k) for k in ("id", "title", "url")):
            problems.append(f"{path.name}: source #{i + 1} needs 'id', 'title' and 'url'")
            continue
        sid = str(item["id"])
        url = str(item["url"])
        if not re.match(r"^https?://[^\s/]+\.[^\s]+$", url):
            problems.append(f"{path.name}: source {sid!r} has an invalid URL {url!r}")
        if sid in sources:
            problems.append(f"{path.name}: duplicate source id {sid!r}")
        sources[sid] = Source(id=sid, title=str(item["title"]), url=url)
    return sources


def parse_kb_file(path: Path) -> KBEntry:
    """Parse one file; unreadable structure raises ``KBError``, content problems go to ``entry.problems``."""
    meta, body = _split_front_matter(path.read_text(encoding="utf-8"), path)
    problems: list[str] = []
    patient, clinician = _as_names(meta, path, problems)
    synonyms = meta.get("synonyms") or []
    if not isinstance(synonyms, list):
        problems.append(f"{path.name}: 'synonyms' must be a list")
        synonyms = []
    entry = KBEntry(
        condition_id=str(meta.get("id") or ""),
        path=path,
        patient_name=patient,
        clinician_name=clinician,
        synonyms=tuple(str(s) for s in synonyms),
        icd10=str(meta["icd10"]) if meta.get("icd10") else None,
        sources=_as_sources(meta, path, problems),
        problems=problems,
    )
    if not entry.condition_id:
        problems.append(f"{path.name}: front matter has no 'id'")
    for block in _headed_blocks(body, path, entry.section_order, problems):
        if block.section is None:
            if any(line.strip() for line in block.lines):
                problems.append(f"{path.name}: text before the first '## ' section is ignored")
            continue
        entry.passages.extend(_passages(entry.condition_id, block))
    return entry


@dataclass
class _HeadedBlock:
    """The lines under one heading: their section (None before the first known '## ') and their reader."""

    section: str | None
    audience: PassageAudience
    lines: list[str] = field(default_factory=list)


def _headed_blocks(body: str, path: Path, section_order: list[str], problems: list[str]) -> Iterator[_HeadedBlock]:
    """The body cut at its '## ' (section) and '### ' (For patients / For clinicians) headings, in order.

    A block is yielded when the next heading starts, before that heading's own problems are recorded, so problems
    come in the order of the file. Known sections are appended to ``section_order``. A '# ' title line is skipped.
    """
    block = _HeadedBlock(None, "all")
    for line in body.splitlines():
        if line.startswith("## "):
            yield block
            heading = line[3:].strip()
            section = section_id(heading)
            if section is None:
                problems.append(f"{path.name}: unknown section heading {heading!r}")
            elif section in section_order:
                problems.append(f"{path.name}: section {heading!r} appears twice")
            else:
                section_order.append(section)
            block = _HeadedBlock(section, "all")
        elif line.startswith("### "):
            yield block
            heading = line[4:].strip()
            audience = AUDIENCE_HEADINGS.get(heading.lower())
            if audience is None:
                problems.append(f"{path.name}: unknown sub-heading {heading!r} (use 'For patients' / 'For clinicians')")
            block = _HeadedBlock(block.section, audience or block.audience)
        elif not line.startswith("# "):
            block.lines.append(line)
    yield block


def _passages(condition_id: str, block: _HeadedBlock) -> Iterator[Passage]:
    """One passage per paragraph or list item with statements; clinician notes are for clinicians unless a
    sub-heading says otherwise."""
    default_audience: PassageAudience = "clinician" if block.section == "clinician_notes" else "all"
    assert block.section is not None
    for text, is_item in _blocks(block.lines):
        statements = parse_statements(text)
        if statements:
            yield Passage(
                condition_id=condition_id,
                section=block.section,
                audience=block.audience if block.audience != "all" else default_audience,
                statements=tuple(statements),
                is_list_item=is_item,
            )


def kb_files(kb_dir: Path | None = None) -> list[Path]:
    """Condition files; the folder's README (the format description) is not a condition."""
    return sorted(p for p in (kb_dir or KB_DIR).glob("*.md") if p.name.lower() != "readme.md")


def kb_digest(kb_dir: Path | None = None) -> str:
    """A hash of every KB file's name and bytes: the index cache key changes exactly when the KB does."""
    h = hashlib.sha256()
    for path in kb_files(kb_dir):
        h.update(path.name.encode())
        h.update(b"\0")
        h.update(path.read_bytes())
        h.update(b"\0")
    return h.hexdigest()


def _kb_stamp(kb_dir: Path) -> tuple[tuple[str, int, int], ...]:
    """Cheap change detector (names, sizes, mtimes) so a process notices an edited KB without re-hashing."""
    return tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in kb_files(kb_dir))


def load_kb(kb_dir: Path | None = None) -> KnowledgeBase:
    """Parse every file. A file that cannot be read at all raises ``KBError`` naming it."""
    kb_dir = Path(kb_dir or KB_DIR)
    entries: dict[str, KBEntry] = {}
    for path in kb_files(kb_dir):
        entry = parse_kb_file(path)
        key = entry.condition_id or path.stem
        if key in entries:
            entry.problems.append(f"{path.name}: id {key!r} is already used by {entries[key].path.name}")
        entries[key] = entry
    return KnowledgeBase(entries=entries, kb_dir=kb_dir, digest=kb_digest(kb_dir))


_cache_lock = threading.Lock()
_cache: dict[Path, tuple[tuple[tuple[str, int, int], ...], KnowledgeBase]] = {}


def get_kb(kb_dir: Path | None = None) -> KnowledgeBase:
    """The parsed KB, cached per process and re-read when a file changes."""
    kb_dir = Path(kb_dir or KB_DIR).resolve()
    stamp = _kb_stamp(kb_dir)
    with _cache_lock:
        cached = _cache.get(kb_dir)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        kb = load_kb(kb_dir)
        _cache[kb_dir] = (stamp, kb)
        return kb


# -- validation ---------------------------------------------------------------------------------------------
def _validate_entry(entry: KBEntry, vocab: Vocabulary) -> list[str]:
    name = entry.path.name
    problems = list(entry.problems)
    if entry.condition_id and entry.condition_id not in vocab:
        problems.append(f"{name}: id {entry.condition_id!r} is not in the condition vocabulary")
    if entry.condition_id and entry.path.stem != entry.condition_id:
        problems.append(f"{name}: file name should be {entry.condition_id}.md")
    if entry.condition_id in vocab:
        cond = vocab.get(entry.condition_id)
        if entry.icd10 is None:
            problems.append(f"{name}: no 'icd10' code")
        elif cond.icd10 and not (entry.icd10.startswith(cond.icd10[:3]) or cond.icd10.startswith(entry.icd10[:3])):
            problems.append(f"{name}: icd10 {entry.icd10!r} disagrees with the vocabulary ({cond.icd10!r})")
        for synonym in entry.synonyms:
            resolved = vocab.resolve(synonym)
            if resolved is not None and resolved != entry.condition_id:
                problems.append(f"{name}: synonym {synonym!r} belongs to {resolved!r} in the vocabulary")
    expected = [s for s in SECTIONS if s in entry.section_order]
    missing = [SECTIONS[s] for s in SECTIONS if s not in entry.section_order]
    if missing:
        problems.append(f"{name}: missing section(s): {', '.join(missing)}")
    if entry.section_order != expected:
        problems.append(f"{name}: sections are not in the fixed order ({', '.join(SECTIONS.values())})")
    used: set[str] = set()
    for section in entry.section_order:
        passages = entry.section(section)
        if not passages:
            problems.append(f"{name}: section {SECTIONS[section]!r} is empty")
            continue
        if not any(p.source_ids for p in passages):
            problems.append(f"{name}: section {SECTIONS[section]!r} cites no source")
        for passage in passages:
            for statement in passage.statements:
                if not statement.source_ids:
                    problems.append(f"{name}: {SECTIONS[section]!r}: uncited text {statement.text[:60]!r}")
                for sid in statement.source_ids:
                    used.add(sid)
                    if sid not in entry.sources:
                        problems.append(
                            f"{name}: {SECTIONS[section]!r}: marker [{sid}] names no source in the front matter"
                        )
    for section in ("how_it_looks",):
        if section in entry.section_order:
            audiences = {p.audience for p in entry.section(section)}
            if "all" not in audiences and not {"patient", "clinician"} <= audiences:
                problems.append(f"{name}: {SECTIONS[section]!r} needs text for both patients and clinicians")
    unused = sorted(set(entry.sources) - used)
    if unused:
        problems.append(f"{name}: source(s) never cited: {', '.join(unused)}")
    return problems


def validate_kb(kb_dir: Path | None = None, vocab: Vocabulary | None = None) -> list[str]:
    """Every problem in the KB as a readable line (empty list = valid): structure, ids, citations, coverage."""
    vocab = vocab or get_vocabulary()
    kb_dir = Path(kb_dir or KB_DIR)
    problems: list[str] = []
    entries: dict[str, KBEntry] = {}
    for path in kb_files(kb_dir):
        try:
            entry = parse_kb_file(path)
        except KBError as exc:
            problems.append(str(exc))
            continue
        if entry.condition_id in entries:
            problems.append(
                f"{path.name}: id {entry.condition_id!r} is already used by {entries[entry.condition_id].path.name}"
            )
        entries[entry.condition_id] = entry
        problems.extend(_validate_entry(entry, vocab))
    missing = [cid for cid in vocab.ids() if cid not in entries]
    if missing:
        problems.append(f"no knowledge-base file for vocabulary condition(s): {', '.join(missing)}")
    return problems


def build_label_index(kb: KnowledgeBase, vocab: Vocabulary | None = None) -> dict[str, str]:
    """Normalised names and synonyms (vocabulary + KB front matter) -> condition id, for query expansion."""
    vocab = vocab or get_vocabulary()
    labels: dict[str, str] = {}
    for cid, names in vocab.all_names().items():
        for label in names:
            labels.setdefault(label, cid)
    for entry in kb.entries.values():
        if entry.condition_id not in vocab:
            continue
        for label in (entry.patient_name, entry.clinician_name, *entry.synonyms):
            for part in [label, *re.split(r"[()/]", label)]:
                key = normalise_label(part)
                if len(key) >= 2:
                    labels.setdefault(key, entry.condition_id)
    return labels
