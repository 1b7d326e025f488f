"""``python -m dermchat eval-redflags``: sensitivity and false-alarm rate of the red-flag text screen.

Phrasing sets in ``dermchat/data``:

- ``redflag_phrasings.jsonl`` (dev): the first 138 lines written together with the rules, then every set written by
  someone who never saw the rules that was afterwards read to change the screen.
- ``redflag_phrasings_heldout.jsonl``: 30 lines written after the first rules. Its last two misses were read on
  2026-12-05, so it is no longer an independent figure.
- ``redflag_phrasings_heldout2.jsonl``: 120 lines written blind on 2026-12-05 and scored once; then its misses were
  printed by mistake (a set name the blind filter did not know, since fixed). No rule has been changed from it.
- ``redflag_phrasings_blind*.jsonl`` (blind, blind2): written by people who never saw the rules. Their figures may be
  read; their texts, misses and false alarms are not read by whoever changes the screen: any set whose name starts
  with "blind" prints figures only, unless ``--show-texts``.

Each line is ``{"text": ..., "red_flag": true|false, "urgency": "soon"|"now"|null}``. Sensitivity counts a red flag
found at all; "urgency right" counts it found with the expected urgency (a "now" sign reported as "soon" is a miss
there).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from dermchat.cli_output import emit, fail
from dermchat.paths import DATA_PACKAGE_DIR
from dermchat.redflags.screen import screen

PHRASING_SETS = {
    "dev": DATA_PACKAGE_DIR / "redflag_phrasings.jsonl",
    "heldout": DATA_PACKAGE_DIR / "redflag_phrasings_heldout.jsonl",
    "heldout2": DATA_PACKAGE_DIR / "redflag_phrasings_heldout2.jsonl",
    "blind": DATA_PACKAGE_DIR / "redflag_phrasings_blind.jsonl",
    "blind2": DATA_PACKAGE_DIR / "redflag_phrasings_blind2.jsonl",
}


def is_blind(name: str) -> bool:
    """A set whose texts stay unread: figures only, unless asked (reading them would make it one more dev set)."""
    return name.startswith("blind")


def load_phrasings(path: Path, *, keep_sign: bool = False) -> list[dict[str, Any]]:
    """The labelled phrasings of one set; a malformed line is an error naming the line. ``keep_sign``: keep the
    writer's name for the sign ("sign"), which training uses to name a learned hit."""
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            kept = {"text": str(row["text"]), "red_flag": bool(row["red_flag"]), "urgency": row.get("urgency")}
            rows.append({**kept, "sign": row.get("sign")} if keep_sign else kept)
        except (ValueError, KeyError) as exc:
            raise ValueError(f"{path}:{number}: not a phrasing line ({exc})") from None
    return rows


def evaluate(rows: list[dict[str, Any]], *, learned: bool = True) -> dict[str, Any]:
    """Sensitivity, false-alarm rate, urgency agreement and the misses by text (``learned=False``: the rules alone)."""
    flagged = [r for r in rows if r["red_flag"]]
    plain = [r for r in rows if not r["red_flag"]]
    misses, false_alarms, wrong_urgency = [], [], []
    for row in rows:
        hits = screen(row["text"], learned=learned)
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
    parser.add_argument("--rules-only", action="store_true", help="the rules alone, without the learned screen")
    parser.add_argument(
        "--show-texts",
        action="store_true",
        help="also list the blind set's misses and false alarms (it stops being blind)",
    )
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
            figures = evaluate(load_phrasings(path), learned=not args.rules_only)
        except ValueError as exc:
            return fail(exc)
        report[name] = figures if not is_blind(name) or args.show_texts else figures_only(figures)
    return emit(report, args.json, print_report, indent=2)


def figures_only(figures: dict[str, Any]) -> dict[str, Any]:
    """The figures without the texts behind them: counts of misses, false alarms and wrong urgencies."""
    hidden = ("misses", "false_alarms", "wrong_urgency")
    return {**{k: v for k, v in figures.items() if k not in hidden}, **{f"{k}_count": len(figures[k]) for k in hidden}}


def print_report(report: dict[str, Any]) -> None:
    for name, figures in report.items():
        print(
            f"{name}: n={figures['n']} sensitivity={figures['sensitivity']} "
            f"false_alarm_rate={figures['false_alarm_rate']} urgency_right={figures['urgency_right']}"
        )
        for text in figures.get("misses", []):
            print(f"  missed: {text}")
        for item in figures.get("false_alarms", []):
            print(f"  false alarm: {item['text']} ({', '.join(item['rules'])})")
