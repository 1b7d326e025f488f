"""``python -m dermchat feedback export --out DIR [--db FILE]``: the answer feedback as CSV and JSONL."""

from __future__ import annotations

import argparse
from pathlib import Path

from dermchat.cli_output import fail


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dermchat feedback", description="answer feedback tools")
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser("export", help="write feedback.csv (formula-safe) and feedback.jsonl")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--db", help="feedback SQLite file (default: DERMCHAT_FEEDBACK_DB or the cache folder)")
    return parser


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    from dermchat.feedback.export import export_feedback
    from dermchat.feedback.store import COLUMNS, FeedbackStore, default_feedback_db

    db = Path(args.db).expanduser() if args.db else default_feedback_db()
    if not db.is_file():  # opening it would create an empty database and export nothing, silently
        return fail(f"{db}: no such feedback database (no answer has been rated yet?)")
    rows = FeedbackStore(db).rows()
    for path in export_feedback(rows, args.out, COLUMNS).values():
        print(path)
    return 0
