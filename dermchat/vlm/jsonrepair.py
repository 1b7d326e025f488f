"""Find the JSON object a language model wrote somewhere in its answer, repaired by ``json-repair``.

json-repair (PyPI) exists for exactly this: LLM output that is almost JSON. It finds the object inside prose
and code fences and mends single quotes, unquoted keys, trailing and missing commas, Python's ``True``/``None``,
comments, unescaped quotes inside strings and an answer cut off by the token limit. Two small things stay here.
An apostrophe between two letters is escaped before the library reads the text: json-repair 0.64 takes the
apostrophe of "Bowen's" in a single-quoted value that ends an object (``'condition': 'Bowen's disease'}``)
for the closing quote and swallows the rest of the object (a test pins this down). And when an answer holds
several JSON values (an example object, then the real one) the largest object is taken as the answer;
``strip_json`` gives the prose around the JSON for the rationale.
"""

from __future__ import annotations

import json
import re
from typing import Any

_FENCE = re.compile(r"```(?:json|JSON|javascript|js)?\s*\n?(.*?)(?:```|$)", re.S)
_INNER_APOSTROPHE = re.compile(r"(?<=[A-Za-z])'(?=[A-Za-z])")  # "Bowen's", "isn't": never a string delimiter


def loads_lenient(text: str) -> dict[str, Any] | None:
    """The JSON object in ``text`` (the largest, when there are several), repaired; ``None`` when there is none."""
    import json_repair

    try:
        value = json_repair.loads(_INNER_APOSTROPHE.sub(r"\\'", text))
    except (ValueError, RecursionError):
        return None
    values = value if isinstance(value, list) else [value]
    objects = [v for v in values if isinstance(v, dict) and v]
    return max(objects, key=lambda v: len(json.dumps(v, default=str)), default=None)


def _balanced_end(text: str, start: int) -> int:
    """Index just past the brace closing the one at ``start`` (string-aware); ``len(text)`` if it never closes."""
    depth, in_string, escaped = 0, False, False
    for i in range(start, len(text)):
        ch = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
            if depth == 0:
                return i + 1
    return len(text)


def strip_json(text: str) -> str:
    """The prose around the JSON: fenced blocks and brace runs removed (used as a rationale fallback)."""
    text = _FENCE.sub(" ", text)
    start = text.find("{")
    while start != -1:
        end = _balanced_end(text, start)
        text = text[:start] + " " + text[end:]
        start = text.find("{")
    return re.sub(r"[ \t]+", " ", text).strip()
