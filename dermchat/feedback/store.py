"""Feedback rows in one SQLite file that only the app's user can read (folder 0700, file 0600).

A row is created by a rating and updated when the same answer is rated again or given a comment, so one
answer in one conversation is one row. Every write is its own committed transaction.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dermchat.feedback.record import check_rating, clean_comment
from dermchat.paths import cache_dir

FEEDBACK_DB_ENV = "DERMCHAT_FEEDBACK_DB"
COLUMNS = ["id", "created_at", "updated_at", "result_id", "providers", "tier", "rating", "comment"]
SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    result_id TEXT NOT NULL,
    providers TEXT NOT NULL,
    tier TEXT NOT NULL,
    rating TEXT NOT NULL,
    comment TEXT NOT NULL DEFAULT ''
)
"""


def default_feedback_db() -> Path:
    """``DERMCHAT_FEEDBACK_DB``, else ``<cache>/feedback/feedback.sqlite``."""
    env = os.environ.get(FEEDBACK_DB_ENV)
    return Path(env).expanduser() if env else cache_dir() / "feedback" / "feedback.sqlite"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _private_file(path: Path) -> None:
    """Create the folder (0700) and the database file (0600) before SQLite opens it, so it is never readable
    by other users, not even for a moment; SQLite gives its journal the database file's mode."""
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)  # an existing file made elsewhere with a looser mode


class FeedbackStore:
    """Create, update and read feedback rows; safe to share between the app's threads."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else default_feedback_db()
        _private_file(self.path)
        self._lock = threading.Lock()
        with self._connect() as conn:
            conn.execute(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30)

    def add(self, fields: dict[str, Any], rating: str, comment: str | None = None) -> int:
        """A new row for a rated answer (``fields`` from ``feedback_fields``); returns its id."""
        stamp = _now()
        with self._lock, self._connect() as conn:
            cursor = conn.execute(
                "INSERT INTO feedback (created_at, updated_at, result_id, providers, tier, rating, comment)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    stamp,
                    stamp,
                    str(fields["result_id"]),
                    json.dumps(fields.get("providers", {}), sort_keys=True),
                    str(fields.get("tier") or ""),
                    check_rating(rating),
                    clean_comment(comment),
                ),
            )
            return int(cursor.lastrowid or 0)

    def update(self, feedback_id: int, *, rating: str | None = None, comment: str | None = None) -> bool:
        """Change the rating and/or the comment of a row; ``False`` when it no longer exists."""
        sets, values = ["updated_at = ?"], [_now()]
        if rating is not None:
            sets.append("rating = ?")
            values.append(check_rating(rating))
        if comment is not None:
            sets.append("comment = ?")
            values.append(clean_comment(comment))
        with self._lock, self._connect() as conn:
            cursor = conn.execute(f"UPDATE feedback SET {', '.join(sets)} WHERE id = ?", (*values, int(feedback_id)))
            return cursor.rowcount > 0

    def delete(self, feedback_id: int) -> None:
        """A rating taken back (the like button clicked again)."""
        with self._lock, self._connect() as conn:
            conn.execute("DELETE FROM feedback WHERE id = ?", (int(feedback_id),))

    def rows(self) -> list[dict[str, Any]]:
        with self._connect() as conn:
            conn.row_factory = sqlite3.Row
            rows = [dict(r) for r in conn.execute(f"SELECT {', '.join(COLUMNS)} FROM feedback ORDER BY id")]
        for row in rows:
            row["providers"] = json.loads(row["providers"])
        return rows
