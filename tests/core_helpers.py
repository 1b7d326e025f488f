"""Builders shared by the core tests: an app wired to the fake plugins, and small test images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from fake_plugins import FAKE_SETTINGS, FakePlugin
from PIL import Image

from dermchat.engine import DermChat
from dermchat.plugin_manager import PluginManager
from dermchat.settings import Settings


def fake_app(tmp_path: Path, plugins: list[tuple[object, str]] | None = None, **overrides: Any) -> DermChat:
    pm = PluginManager(load_entry_points=False)
    pm.register(FakePlugin(), "fakes")
    for plugin, name in plugins or []:
        pm.register(plugin, name)
    settings = Settings(**{**FAKE_SETTINGS, "workdir": str(tmp_path), **overrides})
    return DermChat(settings, pm)


def solid_image(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (64, 48), noise: bool = True) -> Path:
    img = Image.new("RGB", size, colour)
    if noise:  # a little texture so "uniform" checks don't fire
        px = img.load()
        for x in range(0, size[0], 3):
            px[x, size[1] // 2] = tuple(max(0, c - 20) for c in colour)
    img.save(path)
    return path


def ham_photo(ham_dir: Path, image_id: str) -> np.ndarray:
    """One real HAM10000 photo as an HxWx3 uint8 array."""
    with Image.open(ham_dir / "images" / f"{image_id}.jpg") as im:
        return np.asarray(im.convert("RGB"))


def ham_expert_mask(ham_dir: Path, image_id: str) -> np.ndarray:
    """The HAM10000 expert lesion mask of one photo, as a boolean HxW array."""
    with Image.open(ham_dir / "masks" / f"{image_id}.png") as im:
        return np.asarray(im.convert("L")) > 127


def ham_arrays(ham_dir: Path, image_ids: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Real HAM10000 photos as HxWx3 uint8 arrays, by image id (what the quality measures take)."""
    return {image_id: ham_photo(ham_dir, image_id) for image_id in image_ids}


def soft_edged(skin: np.ndarray, painted: np.ndarray, region: np.ndarray, sigma: float = 4.0) -> np.ndarray:
    """``painted`` inside ``region`` fading into ``skin`` over a few pixels, as a real benign spot's edge does
    (a one-pixel step reads as the most abrupt border the ABCD rule knows, 8 of 8 segments)."""
    import cv2

    alpha = cv2.GaussianBlur(region.astype(np.float32), (0, 0), sigma)[..., None]
    return np.asarray(skin * (1 - alpha) + painted * alpha)


def without_segmenter_weights(monkeypatch: Any, folder: Path) -> None:
    """Point the shipped lesion segmenter at ``folder`` (no weights there) and forget the loaded one; pytest's
    ``monkeypatch`` restores both after the test."""
    from dermchat.morphology import segmenter

    monkeypatch.setattr(segmenter, "WEIGHTS_DIR", folder)
    monkeypatch.setattr(segmenter, "_default", None)
    monkeypatch.setattr(segmenter, "_failed", False)


def tiny_training_args(
    ham_dir: Path, *, limit: int = 64, max_batches: int = 1, batch_size: int = 16, epochs: int | None = 1
) -> list[str]:
    """``train-classifier`` arguments for a run of a few batches on a small subset, on one thread (``epochs=None``
    leaves ``--epochs`` to the caller)."""
    args = ["--data", str(ham_dir), "--limit", str(limit), "--max-batches", str(max_batches)]
    args += ["--batch-size", str(batch_size), "--threads", "1"]
    return args + (["--epochs", str(epochs)] if epochs is not None else [])
