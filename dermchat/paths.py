"""Where DermChat finds data, weights and caches.

Everything is configurable by environment variable so that a Space, a laptop and CI can each point at
their own folders without code changes; the defaults match a checkout with ``../shared`` beside it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent
DATA_PACKAGE_DIR = PACKAGE_DIR / "data"
WEIGHTS_DIR = PACKAGE_DIR / "weights"


def default_data_dir() -> Path:
    """The HAM10000-layout folder (``metadata.csv`` + ``images/`` [+ ``masks/``]) used for atlases and evals."""
    env = os.environ.get("DERMCHAT_DATA_DIR")
    if env:
        return Path(env).expanduser()
    return (REPO_DIR.parent / "shared" / "data" / "ham10000").resolve()


def cache_dir() -> Path:
    """A writable cache folder (indexes, generated images); created on first use."""
    env = os.environ.get("DERMCHAT_CACHE_DIR")
    path = Path(env).expanduser() if env else Path.home() / ".cache" / "dermchat"
    path.mkdir(parents=True, exist_ok=True)
    return path


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks (weights files need not fit in memory twice)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
