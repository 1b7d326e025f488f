"""Figures for ``dermchat bench``: how long parsing a VLM answer takes (lexical and embedding mapping).

Parsing runs on every VLM turn on the CPU, after generation; these figures show it stays negligible next to
generation itself. Answer shapes are the ones the parser tests use (valid, prose-wrapped, broken, garbage).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

SAMPLE_ANSWERS: tuple[str, ...] = (
    'Even brown colour and a regular border.\n```json\n{"differential": [{"condition": "melanocytic_nevus", '
    '"likelihood": 0.7}, {"condition": "melanoma", "likelihood": 0.3}], "triage": "routine"}\n```',
    "Assessment: {'differential': [{'name': 'Nevus', 'probability': '50%'}, {'name': 'BCC', 'probability': '50%'},], "
    "'triage': 'non-urgent'}",
    '{differential: {melanoma: 60, "seborrhoeic keratoses": 40}, triage: urgent',
    "This could be many things; please ask a dermatologist to look at it in person.",
    "zemazema\x15T zema&zema44 ;od;od ]]{{",
)


def parser_figures(options: dict[str, Any]) -> dict[str, Any]:
    """Median milliseconds per parsed answer, without and with the MiniLM name matcher."""
    from dermchat.vlm.parser import ConditionMapper, parse_response

    runs = max(1, int(options.get("runs", 10)))
    figures: dict[str, Any] = {"answers": len(SAMPLE_ANSWERS), "runs": runs}
    for name, mapper in (("lexical", ConditionMapper(use_embeddings=False)), ("embedding", ConditionMapper())):
        start = time.perf_counter()
        parse_response(SAMPLE_ANSWERS[2], provider_id="bench", mapper=mapper)  # first call loads the encoder
        figures[f"{name}_first_call_ms"] = round((time.perf_counter() - start) * 1000, 1)
        per_answer: list[float] = []
        for _ in range(runs):
            for answer in SAMPLE_ANSWERS:
                start = time.perf_counter()
                parse_response(answer, provider_id="bench", mapper=mapper)
                per_answer.append((time.perf_counter() - start) * 1000)
        figures[f"{name}_parse_ms_p50"] = round(statistics.median(per_answer), 3)
        figures[f"{name}_parse_ms_max"] = round(max(per_answer), 3)
    return figures
