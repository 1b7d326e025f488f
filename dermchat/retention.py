"""Deleting what users leave behind: cleaned uploads and per-turn folders (heat maps of their photo).

Why: both hold a copy of a health photo and nothing else ever removes them. ``prune_expired`` deletes the
direct children of a folder that have not changed for longer than the retention time
(``Settings.retention_minutes``, env ``DERMCHAT_RETENTION_MINUTES``, default 60).

Only folders the app made are ever pruned: ``claim_dir`` creates a private folder (0700) and puts a marker
file (``MARKER``) in it, and ``prune_expired`` does nothing in a folder without that marker. A folder that
already exists is adopted only when it is empty; pointing ``DERMCHAT_UPLOAD_DIR`` (or the turn folder root) at
a folder with someone's files in it stops with ``ForeignFolderError`` instead of deleting them an hour later.
The default places in the shared temp dir are checked too: a planted link or someone else's folder there is
never used (``app_dir`` then falls back to a fresh ``mkdtemp`` folder).

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
import tempfile
import threading
import time
from pathlib import Path

from dermchat.settings import SettingsError

log = logging.getLogger(__name__)

MARKER = ".dermchat-owned"
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600

DEFAULT_RETENTION_MINUTES = 60.0
MIN_RETENTION_MINUTES = 10.0
MIN_INTERVAL_S = 60.0

_last_run: dict[str, float] = {}
_lock = threading.Lock()
_fallbacks: dict[str, Path] = {}


class ForeignFolderError(SettingsError):
    """A folder the app was told to use (and would prune) holds files it did not create."""


def claim_dir(path: str | Path) -> Path:
    """Create (or adopt, when empty) a private folder the app owns, marked with ``MARKER``; returns it.

    Refuses a link, a non-folder, a folder of another user and a non-empty folder without the marker, so the
    retention clean-up can never reach files the app did not write. Idempotent and cheap when already claimed.
    """
    folder = Path(path)
    try:
        os.mkdir(folder, PRIVATE_DIR_MODE)
    except FileExistsError:
        pass
    except FileNotFoundError:
        folder.parent.mkdir(parents=True, exist_ok=True)
        return claim_dir(folder)
    info = os.lstat(folder)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise ForeignFolderError(f"{folder} is a link or not a folder; DermChat did not create it and will not use it")
    if info.st_uid != os.geteuid():
        raise ForeignFolderError(f"{folder} belongs to another user; DermChat did not create it and will not use it")
    marker = folder / MARKER
    if not marker.is_file():
        if any(entry.name != MARKER for entry in os.scandir(folder)):
            raise ForeignFolderError(
                f"{folder} is not empty and DermChat did not create it: its clean-up would delete the files in it. "
                "Choose a new or empty folder."
            )
        fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, PRIVATE_FILE_MODE)
        with os.fdopen(fd, "w") as fh:
            fh.write("Created by DermChat: expired entries in this folder are deleted automatically.\n")
    if stat.S_IMODE(info.st_mode) != PRIVATE_DIR_MODE:
        os.chmod(folder, PRIVATE_DIR_MODE)
    return folder


def app_dir(configured: str | Path | None, default_name: str) -> Path:
    """The app's folder: ``configured`` (claimed, or ``ForeignFolderError``), else ``<temp dir>/<default_name>``.

    In the shared temp dir anyone can create that name first (a link to elsewhere, a folder of their own), so a
    default that cannot be claimed is replaced by a fresh private ``mkdtemp`` folder for this process.
    """
    if configured:
        return claim_dir(configured)
    default = Path(tempfile.gettempdir()) / default_name
    key = str(default)
    with _lock:
        if key in _fallbacks and _fallbacks[key].is_dir():
            return _fallbacks[key]
    try:
        return claim_dir(default)
    except ForeignFolderError as exc:
        fallback = claim_dir(tempfile.mkdtemp(prefix=f"{default_name}-"))
        log.warning("%s; using %s instead", exc, fallback)
        with _lock:
            _fallbacks[key] = fallback
        return fallback


def make_private(path: str | Path) -> None:
    """Make a folder the app wrote (and everything in it) readable by this user only; links are left alone.

    Providers write heat maps and reference copies with the process umask (usually world-readable).
    """
    root = Path(path)
    for folder, dirs, files in os.walk(root, followlinks=False):
        for name, mode in (
            [(".", PRIVATE_DIR_MODE)] + [(d, PRIVATE_DIR_MODE) for d in dirs] + [(f, PRIVATE_FILE_MODE) for f in files]
        ):
            target = os.path.join(folder, name)
            try:
                if not os.path.islink(target):
                    os.chmod(target, mode)
            except OSError:
                continue


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

    Only in a folder marked by ``claim_dir`` (never its marker, never entries of another user).
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
        if not (root / MARKER).is_file():
            log.warning("retention: %s was not created by DermChat (no %s): nothing deleted", root, MARKER)
            return []
        entries = [entry for entry in root.iterdir() if entry.name != MARKER]
    except OSError as exc:
        log.warning("retention: cannot list %s: %s", root, exc)
        return []
    cutoff = (time.time() if now is None else now) - age_limit_s
    removed: list[Path] = []
    for entry in entries:
        try:
            if entry.lstat().st_uid != os.geteuid() or _newest_mtime(entry) >= cutoff:
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
