"""``feedback.csv`` and ``feedback.jsonl``: the feedback rows for analysis.

CSV cells are formula-safe (a spreadsheet would run a comment such as ``=HYPERLINK(...)``); the JSONL keeps
every value exactly as stored, since JSON readers never evaluate it.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from dermchat.csv_safety import formula_safe


def csv_text(rows: Iterable[dict[str, Any]], columns: list[str]) -> str:
    """Rows as CSV with every cell formula-safe; lists and dicts become JSON text first."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: formula_safe(_cell(row.get(k, ""))) for k in columns})
    return buf.getvalue()


def jsonl_text(rows: Iterable[dict[str, Any]]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False, sort_keys=True, default=str) + "\n" for row in rows)


def _cell(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    return "" if value is None else value


def export_feedback(rows: list[dict[str, Any]], out_dir: str | Path, columns: list[str]) -> dict[str, Path]:
    """Write ``feedback.csv`` and ``feedback.jsonl`` into ``out_dir``; returns the paths by file name."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = {"feedback.csv": out / "feedback.csv", "feedback.jsonl": out / "feedback.jsonl"}
    written["feedback.csv"].write_text(csv_text(rows, columns), encoding="utf-8")
    written["feedback.jsonl"].write_text(jsonl_text(rows), encoding="utf-8")
    return written
