"""Uploads leave Gradio's cache only as metadata-free copies.

Gradio writes every upload to its cache as received (EXIF and GPS included), at ``<cache>/<sha256>/<name>``.
Before the chat shows or forwards a photo, ``sanitize_upload`` decodes it with the core intake, writes a
stripped PNG copy (0600) into the app's private upload folder, and deletes Gradio's cached original.

What may be deleted is narrow on purpose: only a regular file exactly at ``<Gradio cache>/<64 hex>/<name>``,
never a path elsewhere (a test, the CLI or a caller may pass a photo of ``../shared``, and a clone may live in
the temp dir). Six people sending the same photo share that one cached file, so reading and stripping one
cached file is serialised and remembered: a request that finds the original already gone gets the copy the
first one made. Stripped copies older than the retention time (``DERMCHAT_RETENTION_MINUTES``, default 60) are
deleted by ``dermchat.retention``, only in a folder the app made.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path

from gradio.utils import get_upload_folder
from PIL import Image

from dermchat.intake import ImageInputError, decode_image
from dermchat.retention import app_dir, prune_expired
from dermchat.settings import Settings

UPLOAD_DIR_ENV = "DERMCHAT_UPLOAD_DIR"
_GRADIO_UPLOAD_FOLDER = re.compile(r"[0-9a-f]{64}")
_REMEMBERED = 1024  # cached originals -> stripped copies, for identical uploads that arrive together

_locks_guard = threading.Lock()
_locks: dict[str, threading.Lock] = {}
_stripped: OrderedDict[str, str] = OrderedDict()


def upload_dir() -> Path:
    """The app's private folder for stripped copies (``DERMCHAT_UPLOAD_DIR``, else one in the temp dir)."""
    return app_dir(os.environ.get(UPLOAD_DIR_ENV) or None, "dermchat-uploads")


def gradio_cache_dir() -> Path:
    """Where Gradio caches uploads (``GRADIO_TEMP_DIR``, else ``<temp dir>/gradio``), as Gradio computes it."""
    return Path(get_upload_folder()).resolve()


def is_gradio_upload(path: str | Path) -> bool:
    """Whether ``path`` is a regular file exactly where Gradio caches an upload: ``<cache>/<sha256>/<name>``."""
    candidate = Path(path)
    try:
        info = os.lstat(candidate)
    except OSError:
        return False
    folder = candidate.parent
    return (
        stat.S_ISREG(info.st_mode)
        and not folder.is_symlink()
        and _GRADIO_UPLOAD_FOLDER.fullmatch(folder.name) is not None
        and folder.parent.resolve() == gradio_cache_dir()
    )


def sanitize_upload(path: str, settings: Settings) -> tuple[str | None, str | None]:
    """Return ``(clean_path, None)`` or ``(None, friendly_error)``; Gradio's cached original is removed either way.

    The size limits and the retention time of stripped copies come from ``settings`` (which already reads
    ``DERMCHAT_MAX_UPLOAD_MB``, ``DERMCHAT_MAX_IMAGE_PIXELS`` and ``DERMCHAT_RETENTION_MINUTES``).
    """
    folder = upload_dir()  # first: a misconfigured folder stops here, before anything is read or deleted
    key = str(Path(path).absolute())
    with _lock_for(key):
        known = _stripped.get(key)
        if known is not None and Path(known).exists():
            _remove_cached_original(path)  # the same photo, uploaded again meanwhile
            _refresh(Path(known))
            return known, None
        try:
            decoded = decode_image(path, max_bytes=settings.max_upload_bytes, max_pixels=settings.max_image_pixels)
        except ImageInputError as exc:
            return None, str(exc)
        finally:
            _remove_cached_original(path)
        prune_expired(folder, settings.retention_minutes)
        target = folder / f"{decoded.sha256[:20]}.png"
        if target.exists():
            _refresh(target)  # the same photo again: its retention starts over
        else:
            _write_private_png(decoded.image, target)
        if is_gradio_upload(path) or not Path(path).exists():
            _remember(key, str(target))
        return str(target), None


def _lock_for(key: str) -> threading.Lock:
    with _locks_guard:
        lock = _locks.get(key)
        if lock is None:
            if len(_locks) >= _REMEMBERED:  # forget idle locks only: two live locks for one file would race
                for idle in [k for k, held in _locks.items() if not held.locked()]:
                    del _locks[idle]
            lock = _locks[key] = threading.Lock()
        return lock


def _remember(key: str, clean: str) -> None:
    with _locks_guard:
        _stripped[key] = clean
        _stripped.move_to_end(key)
        while len(_stripped) > _REMEMBERED:
            _stripped.popitem(last=False)


def _refresh(target: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.utime(target)


def _write_private_png(image: Image.Image, target: Path) -> None:
    """Write under a temporary name (created 0600) and rename into place: readers never see half a file."""
    fd, staging = tempfile.mkstemp(dir=target.parent, prefix=".upload-", suffix=".png")
    try:
        with os.fdopen(fd, "wb") as fh:
            # Fastest zlib level: a 12 MP phone photo took about three times longer at Pillow's default (6), for
            # a short-lived copy (deleted after the retention time) that only needs to be lossless.
            image.save(fh, format="PNG", compress_level=1)
        os.replace(staging, target)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise


def _remove_cached_original(path: str) -> None:
    """Delete Gradio's cached copy of this upload, and nothing else (never a user's or caller's own file)."""
    if not is_gradio_upload(path):
        return
    with contextlib.suppress(OSError):
        os.unlink(path)  # its folder stays: an identical upload may be renaming into it right now
