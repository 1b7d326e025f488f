"""``python -m dermchat eval-redflags``: sensitivity and false-alarm rate of the red-flag text screen.

Two phrasing sets in ``dermchat/data``: ``redflag_phrasings.jsonl`` (dev: written together with the rules) and
``redflag_phrasings_heldout.jsonl`` (written afterwards and never used to change a rule). Each line is
``{"text": ..., "red_flag": true|false, "urgency": "soon"|"now"|null}``. Sensitivity counts a red flag found at
all; "urgency right" counts it found with the expected urgency (a "now" sign reported as "soon" is a miss there).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from dermchat.cli_output import emit, fail
from dermchat.paths import DATA_PACKAGE_DIR
from dermchat.redflags import screen

PHRASING_SETS = {
    "dev": DATA_PACKAGE_DIR / "redflag_phrasings.jsonl",
    "heldout": DATA_PACKAGE_DIR / "redflag_phrasings_heldout.jsonl",
}


def load_phrasings(path: Path) -> list[dict[str, Any]]:
    """The labelled phrasings of one set; a malformed line is an error naming the line."""
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            rows.append({"text": str(row["text"]), "red_flag": bool(row["red_flag"]), "urgency": row.get("urgency")})
        except (ValueError, KeyError) as exc:
            raise ValueError(f"{path}:{number}: not a phrasing line ({exc})") from None
    return rows


def evaluate(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Sensitivity, false-alarm rate, urgency agreement and the misses by text."""
    flagged = [r for r in rows if r["red_flag"]]
    plain = [r for r in rows if not r["red_flag"]]
    misses, false_alarms, wrong_urgency = [], [], []
    for row in rows:
        hits = screen(row["text"])
        if row["red_flag"] and not hits:
            misses.append(row["text"])
        elif not row["red_flag"] and hits:
            false_alarms.append({"text": row["text"], "rules": [h.id for h in hits]})
        elif row["red_flag"]:
            urgency = "now" if any(h.urgency == "now" for h in hits) else "soon"
            if row.get("urgency") and urgency != row["urgency"]:
                wrong_urgency.append({"text": row["text"], "expected": row["urgency"], "got": urgency})
    found = len(flagged) - len(misses)
    return {
        "n": len(rows),
        "red_flags": len(flagged),
        "not_red_flags": len(plain),
        "sensitivity": round(found / len(flagged), 3) if flagged else None,
        "false_alarm_rate": round(len(false_alarms) / len(plain), 3) if plain else None,
        "urgency_right": round((found - len(wrong_urgency)) / len(flagged), 3) if flagged else None,
        "misses": misses,
        "false_alarms": false_alarms,
        "wrong_urgency": wrong_urgency,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dermchat eval-redflags", description=__doc__.splitlines()[0])
    parser.add_argument("--set", choices=[*PHRASING_SETS, "all"], default="all", help="which phrasing set")
    parser.add_argument("--file", help="a phrasing file of your own (JSON lines)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.file:
        sets = {"file": Path(args.file)}
    else:
        sets = PHRASING_SETS if args.set == "all" else {args.set: PHRASING_SETS[args.set]}
    report = {}
    for name, path in sets.items():
        if not path.exists():
            return fail(f"{path}: no such phrasing file")
        try:
            report[name] = evaluate(load_phrasings(path))
        except ValueError as exc:
            return fail(exc)
    return emit(report, args.json, print_report, indent=2)


def print_report(report: dict[str, Any]) -> None:
    for name, figures in report.items():
        print(
            f"{name}: n={figures['n']} sensitivity={figures['sensitivity']} "
            f"false_alarm_rate={figures['false_alarm_rate']} urgency_right={figures['urgency_right']}"
        )
        for text in figures["misses"]:
            print(f"  missed: {text}")
        for item in figures["false_alarms"]:
            print(f"  false alarm: {item['text']} ({', '.join(item['rules'])})")
