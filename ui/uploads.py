"""Uploads leave Gradio's cache only as metadata-free copies.

Gradio writes every upload to its temp cache as received (EXIF and GPS included). Before the chat shows or
forwards a photo, ``sanitize_upload`` decodes it with the core intake, writes a stripped PNG copy into the
app's upload folder, and deletes the original from the cache. Stripped copies older than the retention time
(``DERMCHAT_RETENTION_MINUTES``, default 60) are deleted by ``dermchat.retention`` as new ones arrive.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from dermchat.intake import ImageInputError, decode_image
from dermchat.retention import prune_expired
from dermchat.settings import Settings


def upload_dir() -> Path:
    path = Path(os.environ.get("DERMCHAT_UPLOAD_DIR") or Path(tempfile.gettempdir()) / "dermchat-uploads")
    path.mkdir(parents=True, exist_ok=True)
    return path


def sanitize_upload(path: str, settings: Settings) -> tuple[str | None, str | None]:
    """Return ``(clean_path, None)`` or ``(None, friendly_error)``; the original file is removed either way.

    The size limits and the retention time of stripped copies come from ``settings`` (which already reads
    ``DERMCHAT_MAX_UPLOAD_MB``, ``DERMCHAT_MAX_IMAGE_PIXELS`` and ``DERMCHAT_RETENTION_MINUTES``).
    """
    try:
        decoded = decode_image(path, max_bytes=settings.max_upload_bytes,
                               max_pixels=settings.max_image_pixels)
    except ImageInputError as exc:
        return None, str(exc)
    finally:
        _remove_cached_original(path)
    folder = upload_dir()
    prune_expired(folder, settings.retention_minutes)
    target = folder / f"{decoded.sha256[:20]}.png"
    if target.exists():
        try:
            os.utime(target)  # the same photo again: its retention starts over
        except FileNotFoundError:
            pass
    if not target.exists():
        # Fastest zlib level: a 12 MP phone photo took about three times longer at Pillow's default (6), for
        # a short-lived copy (deleted after the retention time) that only needs to be lossless.
        decoded.image.save(target, format="PNG", compress_level=1)
    return str(target), None


def _remove_cached_original(path: str) -> None:
    """Delete Gradio's cached copy (only files under the temp dir: never a user's own file)."""
    source = Path(path).resolve()
    cache_root = Path(os.environ.get("GRADIO_TEMP_DIR") or tempfile.gettempdir()).resolve()
    if cache_root in source.parents and upload_dir().resolve() not in source.parents:
        try:
            source.unlink()
        except OSError:
            pass
