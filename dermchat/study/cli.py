"""``python -m dermchat study ...``: validate a study file, export, summarise, delete a participant."""

from __future__ import annotations

import argparse
import sys

from dermchat.cli_output import emit, fail
from dermchat.study.definition import StudyDefinitionError, load_study


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dermchat study", description="user-study tools")
    sub = parser.add_subparsers(dest="action", required=True)

    p = sub.add_parser("validate", help="check a study YAML file (errors name file:line)")
    p.add_argument("file")
    p.add_argument("--no-images", action="store_true", help="do not check that the case images exist")

    p = sub.add_parser("export", help="write tidy CSVs and events.jsonl")
    p.add_argument("--db", required=True, help="SQLite file or database URL")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--study", help="only this study id")

    p = sub.add_parser("summary", help="per-arm means with 95%% confidence intervals")
    p.add_argument("--db", required=True)
    p.add_argument("--study")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("delete", help="erase everything recorded under a participant code")
    p.add_argument("--db", required=True)
    p.add_argument("--participant", required=True)
    p.add_argument("--study")
    return parser


def _db_exists(db: str) -> bool:
    from pathlib import Path

    return "://" in db or Path(db).is_file()


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.action == "validate":
        try:
            study = load_study(args.file, check_images=not args.no_images)
        except StudyDefinitionError as exc:
            print(str(exc), file=sys.stderr)
            return 1
        print(
            f"ok: {study.id} — {study.title}: {study.design}-subject, {len(study.arms)} arm(s), "
            f"{len(study.cases.items)} case(s), {len(study.questionnaires)} questionnaire(s)"
        )
        return 0
    if not _db_exists(args.db):
        return fail(f"{args.db}: no such database file")
    if args.action == "export":
        from dermchat.study.export import export

        written = export(args.db, args.out, args.study)
        for _name, path in written.items():
            print(f"{path}")
        return 0
    if args.action == "summary":
        from dermchat.study.summary import format_table, summarise

        rows = summarise(args.db, args.study)
        return emit([r.as_dict() for r in rows], args.json, lambda _: print(format_table(rows)), indent=2)
    from dermchat.study.session import FlowError, normalise_code
    from dermchat.study.store import get_store

    try:
        code = normalise_code(args.participant)
    except FlowError as exc:
        return fail(exc)
    from dermchat.engine import turns_dir
    from dermchat.settings import load_settings
    from dermchat.study.withdraw import withdraw

    done = withdraw(get_store(args.db), code, args.study, turns_dir(load_settings()))
    if not done.rows:
        print(f"no data recorded under {code}", file=sys.stderr)
        return 1
    print(f"deleted {done.rows} row(s) and {done.folders} turn folder(s) recorded under {code}")
    return 0
