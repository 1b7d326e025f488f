"""Deleting what users leave behind: cleaned uploads and per-turn folders (heat maps of their photo).

Why: both hold a copy of a health photo and nothing else ever removes them. ``prune_expired`` deletes the
direct children of a folder that have not changed for longer than the retention time
(``Settings.retention_minutes``, env ``DERMCHAT_RETENTION_MINUTES``, default 60).

Safe beside running turns: an entry's age is taken from the newest modification time of the entry and
everything inside it, so a folder a turn is still writing to is young; the retention time has a floor of
10 minutes, longer than any turn. Symlinks are never followed (a link is removed as a link; a root that is
a link is left alone, since on a shared /tmp it may point somewhere planted). Cheap to call on every turn:
each root is scanned at most once per ``MIN_INTERVAL_S``.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_RETENTION_MINUTES = 60.0
MIN_RETENTION_MINUTES = 10.0
MIN_INTERVAL_S = 60.0

_last_run: dict[str, float] = {}
_lock = threading.Lock()


def _newest_mtime(path: Path) -> float:
    """Newest mtime of ``path`` and, for a real folder, of everything under it (links not followed)."""
    newest = path.lstat().st_mtime
    if not path.is_dir() or path.is_symlink():
        return newest
    for folder, dirs, files in os.walk(path, followlinks=False):
        for name in dirs + files:
            try:
                newest = max(newest, os.lstat(os.path.join(folder, name)).st_mtime)
            except FileNotFoundError:  # removed meanwhile (another pruner, or the turn itself)
                continue
    return newest


def _remove(path: Path) -> None:
    mode = path.lstat().st_mode
    if stat.S_ISDIR(mode):
        shutil.rmtree(path)  # does not follow links inside (fd-based on Linux)
    else:
        path.unlink()


def _due(root: Path, force: bool) -> bool:
    """At most one scan per root per interval, across threads."""
    key = str(root)
    now = time.monotonic()
    with _lock:
        last = _last_run.get(key)
        if not force and last is not None and now - last < MIN_INTERVAL_S:
            return False
        _last_run[key] = now
        return True


def prune_expired(
    root: str | Path,
    max_age_minutes: float | None = DEFAULT_RETENTION_MINUTES,
    *,
    force: bool = False,
    now: float | None = None,
) -> list[Path]:
    """Delete direct children of ``root`` unchanged for ``max_age_minutes``; returns what was removed.

    Never raises for a missing root or a file that vanishes meanwhile: cleanup must not break a turn.
    ``force`` skips the once-a-minute throttle (tests, an explicit cleanup command); ``now`` is for tests.
    """
    root = Path(root)
    age_limit_s = max(float(max_age_minutes or DEFAULT_RETENTION_MINUTES), MIN_RETENTION_MINUTES) * 60.0
    if not _due(root, force):
        return []
    try:
        if root.is_symlink() or not root.is_dir():
            return []
        entries = list(root.iterdir())
    except OSError as exc:
        log.warning("retention: cannot list %s: %s", root, exc)
        return []
    cutoff = (time.time() if now is None else now) - age_limit_s
    removed: list[Path] = []
    for entry in entries:
        try:
            if _newest_mtime(entry) >= cutoff:
                continue
            _remove(entry)
            removed.append(entry)
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("retention: could not remove %s: %s", entry, exc)
    if removed:
        log.info("retention: removed %d expired item(s) from %s", len(removed), root)
    return removed
