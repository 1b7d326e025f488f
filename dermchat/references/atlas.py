"""An image atlas: any folder with ``images/`` and a ``metadata.csv`` whose ``dx`` uses the vocabulary.

Why precomputed features: choosing exemplars "closest to the user's photo" compares colour statistics, skin
tone and lesion size; computing those for thousands of atlas images per turn would take seconds, so they are
computed once from small thumbnails and cached on disk, keyed by the folder and a hash of its metadata and
file listing. A turn then ranks a few thousand rows of a float matrix (well under a millisecond).

Layout (HAM10000's, extended):
- ``metadata.csv``: ``image_id`` (or ``image``/``file``), ``dx`` (vocabulary id, HAM code like ``nv`` or a
  synonym), optional ``localization``/``body_site``, ``skin_tone`` (Fitzpatrick ``I``-``VI``/``1``-``6``, an ITA
  band name, or an ITA angle such as ``35°``) and ``lesion_id`` (images of one lesion are never shown together).
- ``images/<image_id>.(jpg|jpeg|png)``, optional ``masks/<image_id>.png`` (255 = lesion).
- optional ``atlas.yaml`` with ``name``, ``license``, ``attribution`` and ``url`` for captions.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from PIL import Image

from dermchat.paths import cache_dir
from dermchat.references import HAM10000_ATTRIBUTION, HAM10000_LICENSE
from dermchat.references.colour import rgb_to_lab
from dermchat.references.skintone import (
    FITZPATRICK_TYPES,
    MIN_SKIN_PIXELS,
    fallback_lesion_mask,
    ita_category,
    ita_degrees,
    parse_fitzpatrick,
    skin_pixels,
)
from dermchat.vocabulary import get_vocabulary

log = logging.getLogger(__name__)

FEATURE_VERSION = 1
THUMB_SIZE = (64, 48)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
FEATURE_NAMES: tuple[str, ...] = (
    "lesion_L",
    "lesion_a",
    "lesion_b",
    "skin_L",
    "skin_a",
    "skin_b",
    "L_std",
    "a_std",
    "b_std",
    "ita",
    "lesion_fraction",
)
ProgressFn = Callable[[int, int], None]

SITE_GROUPS: dict[str, tuple[str, ...]] = {
    "head and neck": ("head", "face", "scalp", "ear", "neck", "nose", "cheek", "forehead", "lip", "eyelid", "chin"),
    "trunk": ("trunk", "back", "chest", "abdomen", "belly", "flank", "torso", "breast", "buttock"),
    "upper extremity": ("upper extremity", "arm", "forearm", "elbow", "wrist", "shoulder", "hand", "finger"),
    "lower extremity": ("lower extremity", "leg", "thigh", "knee", "shin", "calf", "ankle", "foot", "toe"),
    "acral": ("acral", "palm", "sole", "nail"),
    "genital": ("genital", "groin", "penis", "vulva", "scrotum"),
}


class AtlasError(ValueError):
    """The folder is not a usable atlas; the message says what is missing and how to fix it."""


def normalise_site(text: str | None) -> str:
    """Lower-case body site with separators collapsed; '' for unknown."""
    site = " ".join((text or "").lower().replace("_", " ").replace("-", " ").split())
    return "" if site in {"unknown", "nan", "none", "na"} else site


def site_group(text: str | None) -> str:
    """Coarse body region of a site ('left forearm' -> 'upper extremity'); '' when unknown."""
    site = normalise_site(text)
    if not site:
        return ""
    for group, words in SITE_GROUPS.items():  # whole words: 'forearm' must not match 'ear'
        if site == group or any(re.search(rf"\b{word}s?\b", site) for word in words):
            return group
    return site


_site_group_cached = functools.lru_cache(maxsize=4096)(site_group)


@dataclass(frozen=True)
class AtlasInfo:
    """Where atlas images come from, for captions; HAM10000's by default."""

    name: str = "HAM10000"
    license: str = HAM10000_LICENSE
    attribution: str = HAM10000_ATTRIBUTION
    url: str = "https://doi.org/10.7910/DVN/DBW86T"


def image_features(rgb: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """The feature vector (``FEATURE_NAMES``) of a thumbnail; ``mask`` marks the lesion (None: estimate it)."""
    if mask is None:
        mask = fallback_lesion_mask(rgb)
    lab = rgb_to_lab(rgb)
    flat = lab.reshape(-1, 3)
    lesion = lab[mask] if mask.any() else flat
    skin = skin_pixels(lab, mask)
    if len(skin) < MIN_SKIN_PIXELS:
        skin = flat
    skin_med = np.median(skin, axis=0)
    ita = float(ita_degrees(skin_med[0], skin_med[2]))
    return np.concatenate([lesion.mean(axis=0), skin_med, flat.std(axis=0), [ita, float(mask.mean())]]).astype(
        np.float32
    )


def thumbnail(path: Path, size: tuple[int, int] = THUMB_SIZE) -> np.ndarray:
    """A small RGB array; JPEG ``draft`` decodes at reduced scale, which is most of the speed-up."""
    with Image.open(path) as img:
        img.draft("RGB", (size[0] * 2, size[1] * 2))
        return np.asarray(img.convert("RGB").resize(size, Image.Resampling.BILINEAR))


def mask_thumbnail(path: Path, size: tuple[int, int] = THUMB_SIZE) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("L").resize(size, Image.Resampling.NEAREST)) > 127


@dataclass
class Atlas:
    """Rows of a loaded atlas (aligned arrays) plus where the files are."""

    root: Path
    info: AtlasInfo
    image_ids: list[str]
    files: list[str]
    condition_ids: np.ndarray
    sites: list[str]
    site_groups: list[str]
    lesion_ids: list[str]
    fitzpatrick: np.ndarray  # 1..6, from the skin_tone column or estimated by ITA
    tone_from_metadata: np.ndarray
    features: np.ndarray
    skipped: dict[str, int] = field(default_factory=dict)
    cache_path: Path | None = None
    build_seconds: float | None = None
    built_at: str | None = None  # UTC ISO time the feature cache was built (file time for older caches)
    built_in_this_process: bool = False  # False: features were read from the cache, build_seconds is history

    def __len__(self) -> int:
        return len(self.image_ids)

    def image_path(self, index: int) -> Path:
        return self.root / "images" / self.files[index]

    @functools.cached_property
    def spread(self) -> np.ndarray:
        """Per-feature standard deviation over the atlas: the scale that makes distances comparable."""
        spread: np.ndarray = self.features.std(axis=0) + 1e-6
        return spread

    @functools.cached_property
    def site_array(self) -> np.ndarray:
        return np.array(self.sites, dtype=object)

    @functools.cached_property
    def group_array(self) -> np.ndarray:
        return np.array(self.site_groups, dtype=object)

    def rows_for(self, condition_id: str) -> np.ndarray:
        return np.flatnonzero(self.condition_ids == condition_id)

    def conditions(self) -> list[str]:
        return sorted(set(self.condition_ids.tolist()))


def check_atlas_dir(root: Path) -> str | None:
    """Why ``root`` is not an atlas, or None when it looks like one (cheap: no file is read)."""
    if not root.is_dir():
        return f"no image atlas at {root}"
    missing = [name for name in ("images", "metadata.csv") if not (root / name).exists()]
    if missing:
        return f"no image atlas at {root} (missing {' and '.join(missing)})"
    return None


def read_info(root: Path) -> AtlasInfo:
    """``atlas.yaml`` beside the images, else HAM10000's attribution."""
    path = root / "atlas.yaml"
    if not path.exists():
        return AtlasInfo()
    import yaml

    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    defaults = AtlasInfo()
    return AtlasInfo(
        **{key: str(data.get(key, getattr(defaults, key))) for key in ("name", "license", "attribution", "url")}
    )


def _listing(folder: Path) -> dict[str, str]:
    """image id -> file name for the images (or masks) of a folder."""
    if not folder.is_dir():
        return {}
    out: dict[str, str] = {}
    with os.scandir(folder) as entries:
        for entry in entries:
            stem, suffix = os.path.splitext(entry.name)
            if suffix.lower() in IMAGE_SUFFIXES:
                out.setdefault(stem, entry.name)
    return out


def _column(row: dict[str, str], *names: str) -> str:
    for name in names:
        value = row.get(name)
        if value not in (None, ""):
            return str(value).strip()
    return ""


@dataclass
class _Rows:
    image_ids: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    condition_ids: list[str] = field(default_factory=list)
    sites: list[str] = field(default_factory=list)
    lesion_ids: list[str] = field(default_factory=list)
    tones: list[int] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)


def _read_metadata(root: Path, images: dict[str, str]) -> _Rows:
    resolve = functools.lru_cache(maxsize=None)(get_vocabulary().resolve)  # a few distinct dx values
    rows = _Rows()
    with open(root / "metadata.csv", newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = set(reader.fieldnames or [])
        if "dx" not in header:
            raise AtlasError(f"{root / 'metadata.csv'} has no 'dx' column (found: {', '.join(sorted(header))})")
        if not header & {"image_id", "image", "file"}:
            raise AtlasError(f"{root / 'metadata.csv'} has no 'image_id' column")
        for row in reader:
            image_id = os.path.splitext(os.path.basename(_column(row, "image_id", "image", "file")))[0]
            condition = resolve(_column(row, "dx"))
            if condition is None:
                rows.skipped["unknown dx"] = rows.skipped.get("unknown dx", 0) + 1
                continue
            if image_id not in images:
                rows.skipped["image file missing"] = rows.skipped.get("image file missing", 0) + 1
                continue
            if image_id in rows.image_ids[-1:]:
                continue
            rows.image_ids.append(image_id)
            rows.files.append(images[image_id])
            rows.condition_ids.append(condition)
            rows.sites.append(normalise_site(_column(row, "localization", "body_site", "site")))
            rows.lesion_ids.append(_column(row, "lesion_id") or image_id)
            rows.tones.append(parse_fitzpatrick(_column(row, "skin_tone", "fitzpatrick")) or 0)
    return rows


def cache_key(root: Path, images: dict[str, str], masks: dict[str, str]) -> str:
    """Folder + metadata content + file listing + feature version: any change rebuilds the features."""
    digest = hashlib.sha256()
    digest.update(f"v{FEATURE_VERSION}|{THUMB_SIZE}|{root.resolve()}|".encode())
    digest.update((root / "metadata.csv").read_bytes())
    digest.update("|".join(sorted(images.values())).encode())
    digest.update(b"|masks|" + "|".join(sorted(masks.values())).encode())
    return digest.hexdigest()[:24]


def _features_for(root: Path, file: str, mask_file: str | None) -> np.ndarray:
    rgb = thumbnail(root / "images" / file)
    mask = mask_thumbnail(root / "masks" / mask_file) if mask_file else fallback_lesion_mask(rgb)
    return image_features(rgb, mask)


def compute_features(
    root: Path, rows: _Rows, masks: dict[str, str], progress: ProgressFn | None = None, workers: int = 2
) -> np.ndarray:
    """Feature matrix for all rows; image decoding releases the GIL, so two threads help on two cores."""
    total = len(rows.files)
    out = np.zeros((total, len(FEATURE_NAMES)), dtype=np.float32)
    step = max(1, total // 100)

    def work(i: int) -> None:
        out[i] = _features_for(root, rows.files[i], masks.get(rows.image_ids[i]))

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for done, _ in enumerate(pool.map(work, range(total)), start=1):
            if progress is not None and (done % step == 0 or done == total):
                progress(done, total)
    return out


_MEMORY: dict[str, Atlas] = {}
_MEMORY_LOCK = threading.Lock()


def load_atlas(
    root: str | Path, progress: ProgressFn | None = None, cache_root: Path | None = None, workers: int = 2
) -> Atlas:
    """Read an atlas, building (and caching on disk) its features on first use; later calls are instant."""
    root = Path(root).expanduser()
    problem = check_atlas_dir(root)
    if problem:
        raise AtlasError(problem)
    images, masks = _listing(root / "images"), _listing(root / "masks")
    key = cache_key(root, images, masks)
    with _MEMORY_LOCK:
        if key in _MEMORY:
            return _MEMORY[key]
    rows = _read_metadata(root, images)
    if not rows.image_ids:
        raise AtlasError(f"{root}: no metadata row has both a known dx and an image file ({rows.skipped})")
    cache_path = (cache_root or cache_dir()) / "atlas" / f"{key}.npz"
    features, seconds, built_at = _cached_features(cache_path, rows.image_ids)
    built_now = features is None
    if features is None:
        started = time.perf_counter()
        features = compute_features(root, rows, masks, progress, workers)
        seconds = time.perf_counter() - started
        built_at = datetime.now(UTC).isoformat(timespec="seconds")
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_path.with_suffix(".tmp.npz")
        np.savez(tmp, features=features, image_ids=np.array(rows.image_ids), build_seconds=seconds, built_at=built_at)
        os.replace(tmp, cache_path)
        log.info("atlas features for %d images built in %.1fs -> %s", len(rows.image_ids), seconds, cache_path)
    tone_meta = np.array(rows.tones, dtype=np.int8)
    estimated = np.array(
        [FITZPATRICK_TYPES.index(ita_category(float(ita))[1]) + 1 for ita in features[:, FEATURE_NAMES.index("ita")]],
        dtype=np.int8,
    )
    atlas = Atlas(
        root=root,
        info=read_info(root),
        image_ids=rows.image_ids,
        files=rows.files,
        condition_ids=np.array(rows.condition_ids),
        sites=rows.sites,
        site_groups=[_site_group_cached(s) for s in rows.sites],
        lesion_ids=rows.lesion_ids,
        fitzpatrick=np.where(tone_meta > 0, tone_meta, estimated),
        tone_from_metadata=tone_meta > 0,
        features=features,
        skipped=rows.skipped,
        cache_path=cache_path,
        build_seconds=seconds,
        built_at=built_at,
        built_in_this_process=built_now,
    )
    with _MEMORY_LOCK:
        _MEMORY[key] = atlas
    return atlas


def _cached_features(path: Path, image_ids: list[str]) -> tuple[np.ndarray | None, float | None, str | None]:
    """Features, build seconds and build time from the cache; ``(None, None, None)`` when it must be built."""
    if not path.exists():
        return None, None, None
    try:
        with np.load(path) as data:
            if data["image_ids"].tolist() != image_ids or data["features"].shape[1] != len(FEATURE_NAMES):
                return None, None, None
            if "built_at" in data.files:
                built_at = str(data["built_at"])
            else:  # caches written before the build time was stored: the file's own time
                built_at = datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat(timespec="seconds")
            return data["features"], float(data["build_seconds"]), built_at
    except (OSError, KeyError, ValueError) as exc:
        log.warning("ignoring unreadable atlas cache %s: %s", path, exc)
        return None, None, None


def clear_memory_cache() -> None:
    """Forget atlases loaded in this process (tests; after editing an atlas in place)."""
    with _MEMORY_LOCK:
        _MEMORY.clear()


def describe(atlas: Atlas) -> dict[str, object]:
    """A JSON-able summary (counts per condition, cache file) for listings and benchmarks."""
    counts: dict[str, int] = {}
    for cid in atlas.condition_ids.tolist():
        counts[cid] = counts.get(cid, 0) + 1
    return {
        "root": str(atlas.root),
        "images": len(atlas),
        "per_condition": counts,
        "skipped": atlas.skipped,
        "cache": str(atlas.cache_path) if atlas.cache_path else None,
        "build_seconds": atlas.build_seconds,
        "built_at": atlas.built_at,
        "built_in_this_process": atlas.built_in_this_process,
        "info": json.loads(json.dumps(atlas.info.__dict__)),
    }


__all__ = [
    "FEATURE_NAMES",
    "Atlas",
    "AtlasError",
    "AtlasInfo",
    "check_atlas_dir",
    "image_features",
    "load_atlas",
    "normalise_site",
    "site_group",
    "thumbnail",
]
