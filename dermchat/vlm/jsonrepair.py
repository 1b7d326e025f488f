"""Find and repair the JSON object a language model wrote somewhere in its answer.

Models wrap JSON in prose and code fences, use single quotes, forget quotes around keys, leave trailing
commas, write ``35%`` for a likelihood, use Python's ``True``/``None``, or stop mid-object when they hit the
token limit. Each of those is repaired here by a small character scanner that knows whether it is inside a
string, so an apostrophe in "Bowen's disease" or a comma inside a sentence is never touched.
"""

from __future__ import annotations

import json
import re
from typing import Any

_FENCE = re.compile(r"```(?:json|JSON|javascript|js)?\s*\n?(.*?)(?:```|$)", re.S)
_BARE_LITERALS = {"true": "true", "false": "false", "null": "null", "True": "true", "False": "false", "None": "null"}
_NUMBER = re.compile(r"-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_WORD_START = re.compile(r"[A-Za-z_]")
_SMART_QUOTES = str.maketrans({"“": '"', "”": '"', "„": '"', "‘": "'", "’": "'"})


def candidate_spans(text: str) -> list[str]:
    """Likely JSON snippets, best first: fenced blocks, then each balanced (or truncated) ``{...}`` run.

    Brace runs are tried largest first: the answer object usually contains the smaller ones.
    """
    fenced: list[str] = []
    for match in _FENCE.finditer(text):
        body = match.group(1).strip()
        if "{" in body:
            fenced.append(body[body.index("{"):])
    braces: list[str] = []
    start = text.find("{")
    while start != -1:
        end = _balanced_end(text, start)
        braces.append(text[start:end])
        start = text.find("{", end)
    return list(dict.fromkeys(fenced + sorted(braces, key=len, reverse=True)))


def _balanced_end(text: str, start: int) -> int:
    """Index just past the brace closing the one at ``start`` (string-aware); ``len(text)`` if it never closes."""
    depth, quote, escaped = 0, "", False
    for i in range(start, len(text)):
        ch = text[i]
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = ""
            continue
        if ch == '"':
            quote = ch
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
            if depth == 0:
                return i + 1
    return len(text)


def _closes_single_quote(text: str, i: int) -> bool:
    """A single quote ends a single-quoted string only when JSON punctuation follows it."""
    rest = text[i + 1:].lstrip(" \t")
    return not rest or rest[0] in ",}]:\n\r"


def _bare_word(text: str, i: int) -> tuple[str, int]:
    """A run of unquoted text starting at ``i``: up to JSON punctuation (keys stop at ':')."""
    j = i
    while j < len(text) and text[j] not in ',:{}[]"\n\r':
        j += 1
    return text[i:j].rstrip(), j


def repair(text: str) -> str:
    """Rewrite near-JSON into JSON (see module docstring); closes whatever a truncated answer left open."""
    text = text.translate(_SMART_QUOTES)
    out: list[str] = []
    stack: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in "\"'":
            i = _copy_string(text, i, out)
            continue
        if ch in "{[":
            stack.append("}" if ch == "{" else "]")
            out.append(ch)
        elif ch in "}]":
            _drop_trailing_comma(out)
            if stack:
                out.append(stack.pop())
        elif ch == ",":
            _drop_trailing_comma(out)
            out.append(",")
        elif ch == "%":
            _percent_to_fraction(out)
        elif ch == "/" and text.startswith("//", i):  # // comments
            while i < n and text[i] != "\n":
                i += 1
            continue
        elif ch in "-.0123456789":
            match = _NUMBER.match(text, i)
            if match:
                out.append(match.group(0))
                i = match.end()
                continue
            out.append(ch)
        elif _WORD_START.match(ch):
            word, j = _bare_word(text, i)
            if word in _BARE_LITERALS:
                out.append(_BARE_LITERALS[word])
            else:
                out.append(json.dumps(word.strip()))
            i = j
            continue
        else:
            out.append(ch)
        i += 1
    if out and out[-1] in {",", ":"}:
        out.pop()
    _drop_trailing_comma(out)
    out.extend(reversed(stack))
    return "".join(out)


def _copy_string(text: str, i: int, out: list[str]) -> int:
    """Copy a quoted string as a JSON double-quoted string; returns the index after it (closes a truncated one)."""
    quote = text[i]
    j = i + 1
    chars: list[str] = []
    while j < len(text):
        ch = text[j]
        if ch == "\\" and j + 1 < len(text):
            nxt = text[j + 1]
            chars.append(nxt if nxt == "'" else "\\" + nxt)
            j += 2
            continue
        if ch == quote and (quote == '"' or _closes_single_quote(text, j)):
            j += 1
            break
        if ch == '"' and quote == "'":
            chars.append('\\"')
        elif ch == "\n":
            chars.append("\\n")
        else:
            chars.append(ch)
        j += 1
    out.append('"' + "".join(chars) + '"')
    return j


def _drop_trailing_comma(out: list[str]) -> None:
    k = len(out) - 1
    while k >= 0 and out[k].isspace():
        k -= 1
    if k >= 0 and out[k] == ",":
        del out[k]


def _percent_to_fraction(out: list[str]) -> None:
    """``35%`` -> ``0.35`` (the number was just emitted as its own token)."""
    k = len(out) - 1
    while k >= 0 and out[k].isspace():
        k -= 1
    if k >= 0 and _NUMBER.fullmatch(out[k]):
        out[k] = repr(round(float(out[k]) / 100.0, 6))


def _trim_candidates(text: str) -> list[str]:
    """Prefixes cut at each top-level-ish comma, last first: drops a half-written final field."""
    cuts = [m.start() for m in re.finditer(",", text)]
    return [text[:c] for c in reversed(cuts[-20:])]


def loads_lenient(text: str) -> dict[str, Any] | None:
    """The first JSON object found in ``text``, repaired if needed; ``None`` when there is none."""
    for span in candidate_spans(text):
        for attempt in (span, repair(span)):
            try:
                value = json.loads(attempt)
            except (json.JSONDecodeError, RecursionError):
                continue
            if isinstance(value, dict):
                return value
        for prefix in _trim_candidates(span):
            try:
                value = json.loads(repair(prefix))
            except (json.JSONDecodeError, RecursionError):
                continue
            if isinstance(value, dict):
                return value
    return None


def strip_json(text: str) -> str:
    """The prose around the JSON: fenced blocks and brace runs removed (used as a rationale fallback)."""
    text = _FENCE.sub(" ", text)
    start = text.find("{")
    while start != -1:
        end = _balanced_end(text, start)
        text = text[:start] + " " + text[end:]
        start = text.find("{")
    return re.sub(r"[ \t]+", " ", text).strip()
