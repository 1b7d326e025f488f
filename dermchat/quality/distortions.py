"""Synthetic photo defects at graded severities, for the benchmark and the tests.

Each distortion models a real way a patient photo goes wrong (shaky hand, dim room, phone over-exposing,
heavy compression by a messenger app, a thumbnail instead of the photo, a wrong white balance, the lesion at
the edge of the frame, a flash reflection). Severities are in physical units of a 200x150 frame and are
scaled to the image size, so the same level means the same visual damage at any resolution.
Deterministic: anything random (noise, motion direction, cast hue, shift direction) derives from ``seed``.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# OpenCV is imported inside the functions that use it, so importing this module stays cheap.

_REFERENCE_SIDE = 150.0  # the short side of a HAM10000 frame: severities are defined at this scale


@dataclass(frozen=True)
class Distortion:
    """A named defect, its severities (mild to severe), the one called 'moderate', and the reason it should trigger."""

    name: str
    severities: tuple[float, ...]
    moderate_index: int
    expected_reason: str
    unit: str
    apply: Callable[[np.ndarray, float, int], np.ndarray]

    @property
    def moderate(self) -> float:
        return self.severities[self.moderate_index]


def _scale(rgb: np.ndarray) -> float:
    short_side: int = min(rgb.shape[:2])
    return short_side / _REFERENCE_SIDE


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def gaussian_blur(rgb: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    """Out-of-focus blur with standard deviation ``sigma`` pixels (at 150-px short side)."""
    import cv2

    return cv2.GaussianBlur(rgb, (0, 0), sigma * _scale(rgb))


def motion_blur(rgb: np.ndarray, length: float, seed: int = 0) -> np.ndarray:
    """Camera shake: a straight streak ``length`` pixels long in a direction drawn from ``seed``."""
    import cv2

    n = max(3, int(round(length * _scale(rgb))) | 1)
    angle = float(_rng(seed).uniform(0, 180))
    kernel = np.zeros((n, n), np.float32)
    c = (n - 1) / 2
    for t in np.linspace(-c, c, 4 * n):
        x = c + t * math.cos(math.radians(angle))
        y = c - t * math.sin(math.radians(angle))
        kernel[int(round(y)), int(round(x))] = 1.0
    kernel /= kernel.sum()
    return cv2.filter2D(rgb, -1, kernel, borderType=cv2.BORDER_REFLECT)


def add_noise(rgb: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    """Sensor noise: independent Gaussian noise of ``sigma`` (0..1 scale) per pixel and channel."""
    noise = _rng(seed).normal(0.0, sigma * 255.0, rgb.shape)
    return _to_uint8(rgb.astype(np.float32) + noise)


def darken(rgb: np.ndarray, factor: float, seed: int = 0) -> np.ndarray:
    """Under-exposure: pixel values times ``factor`` (< 1)."""
    return _to_uint8(rgb.astype(np.float32) * factor)


def brighten(rgb: np.ndarray, factor: float, seed: int = 0) -> np.ndarray:
    """Over-exposure: pixel values times ``factor`` (> 1), clipped at white as a sensor would."""
    return _to_uint8(rgb.astype(np.float32) * factor)


def jpeg(rgb: np.ndarray, quality: float, seed: int = 0) -> np.ndarray:
    """Heavy compression: re-encode as JPEG at ``quality`` (1..95) with 4:2:0 chroma."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"))


def downscale(rgb: np.ndarray, factor: float, seed: int = 0) -> np.ndarray:
    """A thumbnail instead of the photo: area-downscale by ``factor`` and keep it small."""
    h, w = rgb.shape[:2]
    size = (max(8, round(w * factor)), max(8, round(h * factor)))
    import cv2

    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


CAST_DIRECTIONS: dict[str, tuple[float, float, float]] = {
    "blue": (-1.0, 0.0, 1.0),
    "green": (-0.5, 1.0, -0.5),
    "cyan": (-1.0, 0.5, 0.5),
    "magenta": (0.5, -1.0, 0.5),
    "yellow": (0.5, 0.5, -1.0),
}


def colour_cast(rgb: np.ndarray, strength: float, seed: int = 0) -> np.ndarray:
    """Wrong white balance: per-channel gains ``1 + strength * direction``; ``seed`` picks the direction
    (blue: daylight setting in shade, yellow: tungsten light, green: fluorescent light, cyan, magenta)."""
    names = sorted(CAST_DIRECTIONS)
    gains = 1.0 + strength * np.array(CAST_DIRECTIONS[names[seed % len(names)]], dtype=np.float32)
    return _to_uint8(rgb.astype(np.float32) * gains)


def off_centre(rgb: np.ndarray, shift: float, seed: int = 0) -> np.ndarray:
    """Lesion near the frame edge: content moved by ``shift`` of the frame towards a corner.

    The strip uncovered on the opposite side is filled by mirroring the skin next to it, so no black band
    gives the defect away.
    """
    import cv2

    h, w = rgb.shape[:2]
    sx, sy = [(1, 1), (-1, 1), (1, -1), (-1, -1)][seed % 4]
    dx, dy = int(round(sx * shift * w)), int(round(sy * shift * h))
    padded = cv2.copyMakeBorder(rgb, abs(dy), abs(dy), abs(dx), abs(dx), cv2.BORDER_REFLECT_101)
    top = abs(dy) - dy
    left = abs(dx) - dx
    return np.ascontiguousarray(padded[top : top + h, left : left + w])


def add_glare(rgb: np.ndarray, area: float, seed: int = 0) -> np.ndarray:
    """Flash reflections: small white spots covering about ``area`` of the frame, near the middle."""
    h, w = rgb.shape[:2]
    rng = _rng(seed)
    out = rgb.astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w]
    spots = 5
    radius = math.sqrt(area * h * w / (spots * math.pi))
    for _ in range(spots):
        cx, cy = rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h
        r = radius * rng.uniform(0.8, 1.2)
        alpha = np.clip(1.5 - np.hypot(xx - cx, yy - cy) / max(r, 0.5), 0.0, 1.0)[..., None]
        out = out * (1 - alpha) + 255.0 * alpha
    return _to_uint8(out)


DISTORTIONS: dict[str, Distortion] = {
    d.name: d
    for d in (
        Distortion("gaussian_blur", (0.6, 1.0, 1.5, 2.2, 3.2), 2, "focus", "sigma px", gaussian_blur),
        Distortion("motion_blur", (4, 6, 9, 13, 19), 2, "focus", "streak px", motion_blur),
        Distortion("noise", (0.02, 0.035, 0.05, 0.08, 0.12), 2, "noise", "sigma", add_noise),
        # Darkening to 0.35-0.15 makes light skin look like well-lit darker skin (Monk 8-10), which must not
        # be turned away; 'moderate' is the first gain darker than any well-lit skin (see assess.RAMPS).
        Distortion("darken", (0.35, 0.25, 0.15, 0.08, 0.05), 3, "underexposed", "gain", darken),
        Distortion("brighten", (1.25, 1.45, 1.7, 2.0, 2.5), 2, "overexposed", "gain", brighten),
        Distortion("jpeg", (40, 25, 15, 8, 4), 2, "compression", "quality", jpeg),
        Distortion("downscale", (0.8, 0.65, 0.5, 0.35, 0.25), 2, "low_resolution", "factor", downscale),
        Distortion("colour_cast", (0.1, 0.2, 0.3, 0.4, 0.5), 2, "color_cast", "gain shift", colour_cast),
        Distortion("off_centre", (0.1, 0.18, 0.26, 0.34, 0.42), 2, "framing", "shift", off_centre),
        Distortion("glare", (0.002, 0.005, 0.01, 0.02, 0.04), 2, "glare", "area", add_glare),
    )
}
