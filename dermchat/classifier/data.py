"""Reading a folder in the HAM10000 layout, splitting it by lesion, and caching decoded pixels.

Why by lesion: one lesion often has several near-identical images; splitting by image would put
siblings on both sides and inflate every held-out figure. Why a pixel cache: decoding 8k JPEGs
takes longer than a training epoch on two cores, so they are decoded once into a uint8 array.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from dermchat.classifier import HAM_CLASSES

INPUT_WIDTH = 128
INPUT_HEIGHT = 96
"""Model input size (4:3 like the HAM frames). Small enough to train on 2 CPU cores."""

SPLIT_NAMES: tuple[str, ...] = ("train", "val", "calib")
DEFAULT_FRACTIONS: tuple[float, float, float] = (0.70, 0.15, 0.15)


class DataError(ValueError):
    """A data folder that is not in the HAM layout, with a message saying what is wrong."""


@dataclass(frozen=True)
class Record:
    """One image row of metadata.csv."""

    image_id: str
    lesion_id: str
    dx: str
    dx_type: str
    age: float | None
    sex: str
    localization: str

    @property
    def label(self) -> int:
        return HAM_CLASSES.index(self.dx)


def default_data_dir() -> Path:
    """The data folder: the core's resolver when present, else DERMCHAT_DATA_DIR or ../shared."""
    try:
        from dermchat.paths import default_data_dir as core_default

        return Path(core_default())
    except (ImportError, AttributeError):
        env = os.environ.get("DERMCHAT_DATA_DIR")
        if env:
            return Path(env)
        return Path(__file__).resolve().parents[2].parent / "shared" / "data" / "ham10000"


def read_metadata(data_dir: Path | str) -> list[Record]:
    """Read metadata.csv of a HAM-layout folder, checking that every listed image exists."""
    data_dir = Path(data_dir)
    meta = data_dir / "metadata.csv"
    images = data_dir / "images"
    if not meta.is_file():
        raise DataError(f"{data_dir} is not a HAM-layout folder: metadata.csv is missing")
    if not images.is_dir():
        raise DataError(f"{data_dir} is not a HAM-layout folder: images/ is missing")
    records: list[Record] = []
    with meta.open(newline="") as fh:
        reader = csv.DictReader(fh)
        needed = {"lesion_id", "image_id", "dx"}
        if not needed.issubset(reader.fieldnames or []):
            raise DataError(f"{meta} lacks columns {sorted(needed - set(reader.fieldnames or []))}")
        for row in reader:
            dx = row["dx"].strip()
            if dx not in HAM_CLASSES:
                raise DataError(f"{meta}: unknown dx {dx!r} for {row['image_id']}")
            age_text = (row.get("age") or "").strip()
            records.append(
                Record(
                    image_id=row["image_id"].strip(),
                    lesion_id=row["lesion_id"].strip(),
                    dx=dx,
                    dx_type=(row.get("dx_type") or "").strip(),
                    age=float(age_text) if age_text else None,
                    sex=(row.get("sex") or "unknown").strip() or "unknown",
                    localization=(row.get("localization") or "unknown").strip() or "unknown",
                )
            )
    missing = [r.image_id for r in records if not (images / f"{r.image_id}.jpg").is_file()]
    if missing:
        raise DataError(f"{len(missing)} images listed in {meta} are missing, e.g. {missing[:3]}")
    if not records:
        raise DataError(f"{meta} lists no images")
    return records


def split_by_lesion(
    records: Sequence[Record], seed: int, fractions: Sequence[float] = DEFAULT_FRACTIONS
) -> dict[str, list[str]]:
    """Assign whole lesions to train/val/calib, stratified by diagnosis, reproducibly from `seed`."""
    if len(fractions) != 3 or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError("fractions must be three numbers summing to 1")
    lesions: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        lesions[r.lesion_id].append(r)
    by_dx: dict[str, list[str]] = defaultdict(list)
    for lesion_id, rows in sorted(lesions.items()):
        by_dx[rows[0].dx].append(lesion_id)
    rng = random.Random(seed)
    split: dict[str, list[str]] = {name: [] for name in SPLIT_NAMES}
    for dx in sorted(by_dx):
        ids = by_dx[dx]
        rng.shuffle(ids)
        n_train = round(fractions[0] * len(ids))
        n_val = round(fractions[1] * len(ids))
        parts = (ids[:n_train], ids[n_train : n_train + n_val], ids[n_train + n_val :])
        for name, part in zip(SPLIT_NAMES, parts):
            for lesion_id in part:
                split[name].extend(r.image_id for r in lesions[lesion_id])
    return {name: sorted(ids) for name, ids in split.items()}


def write_split(
    path: Path,
    split: dict[str, list[str]],
    seed: int,
    fractions: Sequence[float],
    trained_on: Sequence[str] = ("train",),
) -> None:
    """Write the split down (image ids per part, and which parts the network was trained on) so calibration and
    evaluation reuse it exactly and know which figures are in-sample."""
    payload = {
        "method": "stratified by dx, grouped by lesion_id",
        "seed": seed,
        "fractions": list(fractions),
        "trained_on": list(trained_on),
        "counts": {name: len(ids) for name, ids in split.items()},
        **split,
    }
    path.write_text(json.dumps(payload, indent=1))


def read_split(path: Path) -> dict[str, list[str]]:
    payload = json.loads(Path(path).read_text())
    return {name: list(payload[name]) for name in SPLIT_NAMES}


def read_trained_on(path: Path) -> tuple[str, ...]:
    """The split parts the network was trained on (files written before `--fold-in-val` existed: train only)."""
    return tuple(json.loads(Path(path).read_text()).get("trained_on", ["train"]))


def subsample(records: Sequence[Record], limit: int, seed: int) -> list[Record]:
    """A small reproducible subset with every class represented (for smoke runs and CI)."""
    rng = random.Random(seed)
    by_dx: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        by_dx[r.dx].append(r)
    chosen: list[Record] = []
    per_class = max(1, limit // len(by_dx))
    for dx in sorted(by_dx):
        rows = list(by_dx[dx])
        rng.shuffle(rows)
        chosen.extend(rows[:per_class])
    rest = [r for r in records if r not in set(chosen)]
    rng.shuffle(rest)
    chosen.extend(rest[: max(0, limit - len(chosen))])
    return chosen[:limit] if len(chosen) > limit else chosen


def to_model_frame(image: Image.Image, size: tuple[int, int] = (INPUT_WIDTH, INPUT_HEIGHT)) -> np.ndarray:
    """Centre-crop any photo to 4:3 landscape and resize it to the model input (uint8 HxWx3).

    Portrait photos are rotated first: lesions have no preferred orientation, so rotating keeps
    more of the frame than cropping a portrait to landscape.
    """
    img = image.convert("RGB")
    if img.height > img.width:
        img = img.transpose(Image.Transpose.ROTATE_90)
    target = size[0] / size[1]
    w, h = img.size
    if abs(w / h - target) > 0.01:
        if w / h > target:
            new_w = round(h * target)
            left = (w - new_w) // 2
            img = img.crop((left, 0, left + new_w, h))
        else:
            new_h = round(w / target)
            top = (h - new_h) // 2
            img = img.crop((0, top, w, top + new_h))
    return np.asarray(img.resize(size, Image.Resampling.BILINEAR, reducing_gap=None), dtype=np.uint8)


def _mask_frame(path: Path, size: tuple[int, int]) -> np.ndarray:
    if not path.is_file():
        return np.full((size[1], size[0]), 255, dtype=np.uint8)  # unknown: treat the frame as lesion
    mask = Image.open(path).convert("L").resize(size, Image.Resampling.BILINEAR)
    return np.asarray(mask, dtype=np.uint8)


def cache_dir() -> Path:
    return Path(os.environ.get("DERMCHAT_CACHE_DIR", Path.home() / ".cache" / "dermchat"))


def load_pixels(
    data_dir: Path | str,
    image_ids: Sequence[str],
    with_masks: bool = True,
    use_cache: bool = True,
    size: tuple[int, int] = (INPUT_WIDTH, INPUT_HEIGHT),
) -> tuple[np.ndarray, np.ndarray | None]:
    """Decoded model frames (N,H,W,3 uint8) and masks (N,H,W uint8) for `image_ids`, in that order.

    `size` is (width, height): the input size of the network that will read them (`ModelConfig.input_size`).
    """
    data_dir = Path(data_dir)
    width, height = size = (int(size[0]), int(size[1]))
    key = hashlib.sha256(
        ("|".join([str(data_dir.resolve()), f"{size}", str(with_masks), *image_ids])).encode()
    ).hexdigest()[:16]
    cache = cache_dir() / f"ham_{width}x{height}_{key}.npz"
    if use_cache and cache.is_file():
        with np.load(cache) as z:
            return z["images"], (z["masks"] if with_masks else None)
    images = np.empty((len(image_ids), height, width, 3), dtype=np.uint8)
    masks = np.empty((len(image_ids), height, width), dtype=np.uint8) if with_masks else None
    for i, image_id in enumerate(image_ids):
        with Image.open(data_dir / "images" / f"{image_id}.jpg") as im:
            images[i] = to_model_frame(im, size)
        if masks is not None:
            masks[i] = _mask_frame(data_dir / "masks" / f"{image_id}.png", size)
    if use_cache:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npz")
        if masks is not None:
            np.savez(tmp, images=images, masks=masks)
        else:
            np.savez(tmp, images=images)
        tmp.replace(cache)
    return images, masks


def records_by_id(records: Iterable[Record]) -> dict[str, Record]:
    return {r.image_id: r for r in records}
