"""Skin tone from the non-lesion skin of a photo: Individual Typology Angle (ITA) -> a Fitzpatrick-like type.

Why ITA: it is computed from colour alone (CIELab lightness L* and yellow-blue b*: ITA = atan((L*-50)/b*) in
degrees), so it works on any photo without a trained model, and its standard bands (Chardon et al. 1991;
Del Bino & Bernerd 2013) are widely used to describe skin-colour diversity in dermatology datasets. The
mapping of ITA bands to Fitzpatrick I-VI is an approximation (Fitzpatrick is about sun reaction, not colour),
which is why the result is called "Fitzpatrick-like". Lighting and white balance shift ITA; dermoscopic
photos read lighter than clinical ones.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from dermchat.references.colour import rgb_to_lab

log = logging.getLogger(__name__)

# (lower bound exclusive, category, Fitzpatrick-like type), lightest first; below the last bound is "dark".
ITA_BANDS: tuple[tuple[float, str, str], ...] = (
    (55.0, "very light", "I"),
    (41.0, "light", "II"),
    (28.0, "intermediate", "III"),
    (10.0, "tan", "IV"),
    (-30.0, "brown", "V"),
)
DARKEST: tuple[str, str] = ("dark", "VI")
FITZPATRICK_TYPES: tuple[str, ...] = ("I", "II", "III", "IV", "V", "VI")
CATEGORY_TO_FITZPATRICK: dict[str, str] = {cat: fitz for _, cat, fitz in ITA_BANDS} | {DARKEST[0]: DARKEST[1]}

MIN_SKIN_PIXELS = 30


@dataclass(frozen=True)
class SkinTone:
    """An ITA estimate and its category; ``pixels`` says how much skin it was measured on."""

    ita: float
    category: str
    fitzpatrick: str
    lightness: float
    b: float
    pixels: int

    @property
    def fitzpatrick_index(self) -> int:
        """1 for type I ... 6 for type VI (for distances between tones)."""
        return FITZPATRICK_TYPES.index(self.fitzpatrick) + 1

    def describe(self) -> str:
        return f"{self.category} skin (ITA {self.ita:.0f}°, Fitzpatrick-like type {self.fitzpatrick})"


def ita_degrees(lightness: float | np.ndarray, b: float | np.ndarray) -> float | np.ndarray:
    """ITA = atan((L* - 50) / b*) in degrees; b* is kept positive (skin is yellowish) to stay in (-90, 90)."""
    b_pos = np.maximum(np.asarray(b, dtype=np.float64), 1e-3)
    out = np.degrees(np.arctan((np.asarray(lightness, dtype=np.float64) - 50.0) / b_pos))
    return float(out) if np.ndim(out) == 0 else out


def ita_category(ita: float) -> tuple[str, str]:
    """The standard ITA band and its Fitzpatrick-like type, e.g. ``(\"tan\", \"IV\")``."""
    for bound, category, fitz in ITA_BANDS:
        if ita > bound:
            return category, fitz
    return DARKEST


def parse_fitzpatrick(value: Any) -> int | None:
    """Read a metadata ``skin_tone`` cell: Fitzpatrick (``III``, ``3``, ``type 3``, ``FST3``), an ITA band name
    or an ITA angle in degrees (a number with a ``°``/``ita`` marker or outside 1-6). Returns 1-6 or None."""
    if value is None:
        return None
    text = str(value).strip().lower().replace("fitzpatrick", "").replace("fst", "").replace("type", "").strip()
    if not text or text in {"nan", "none", "unknown", "na"}:
        return None
    for category, fitz in CATEGORY_TO_FITZPATRICK.items():
        if text == category:
            return FITZPATRICK_TYPES.index(fitz) + 1
    roman = text.upper()
    if roman in FITZPATRICK_TYPES:
        return FITZPATRICK_TYPES.index(roman) + 1
    is_angle = "°" in text or "ita" in text
    try:
        number = float(text.replace("°", "").replace("ita", "").strip())
    except ValueError:
        return None
    if not is_angle and number.is_integer() and 1 <= number <= 6:
        return int(number)
    return FITZPATRICK_TYPES.index(ita_category(number)[1]) + 1


# -- lesion mask ---------------------------------------------------------------------------------------------


def _quality_team_mask() -> Callable[[np.ndarray], Any] | None:
    """The quality team's segmenter when the module exists (it is maintained beside the quality check)."""
    try:
        module = importlib.import_module("dermchat.quality.segmentation")
    except ImportError:
        return None
    return getattr(module, "lesion_mask", None)


def _otsu_threshold(values: np.ndarray) -> float:
    hist, edges = np.histogram(values, bins=64)
    centres = (edges[:-1] + edges[1:]) / 2
    weight = np.cumsum(hist).astype(np.float64)
    total = weight[-1]
    mean_cum = np.cumsum(hist * centres)
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mean_cum[-1] * weight / total - mean_cum) ** 2 / (weight * (total - weight))
    between = np.nan_to_num(between)
    return float(centres[int(np.argmax(between))])


def fallback_lesion_mask(rgb: np.ndarray) -> np.ndarray:
    """Darkest central region: Otsu threshold on L*, keeping the dark component that covers the centre most.

    Good enough to keep the lesion out of the skin-tone estimate and to measure its size on dermoscopic and
    close-up photos; not a segmentation model.
    """
    from scipy import ndimage  # scipy is a core dependency; imported here to keep module import cheap

    lab = rgb_to_lab(rgb)
    lightness = lab[..., 0]
    valid = lightness > 12  # dermoscope vignette corners are near black, not lesion
    if valid.sum() < MIN_SKIN_PIXELS:
        return np.zeros(lightness.shape, dtype=bool)
    threshold = _otsu_threshold(lightness[valid])
    dark = (lightness < threshold) & valid
    dark = ndimage.binary_opening(dark, iterations=1)
    labels, count = ndimage.label(dark)
    if count == 0:
        nothing_dark: np.ndarray = dark
        return nothing_dark
    h, w = dark.shape
    yy, xx = np.mgrid[0:h, 0:w]
    centrality = 1.0 - np.hypot((yy - h / 2) / (h / 2), (xx - w / 2) / (w / 2)) / np.sqrt(2)
    scores = ndimage.sum(centrality, labels, index=np.arange(1, count + 1))
    keep = int(np.argmax(scores)) + 1
    lesion: np.ndarray = ndimage.binary_fill_holes(labels == keep)
    return lesion


def lesion_mask(rgb: np.ndarray) -> np.ndarray:
    """Boolean lesion mask for an ``(H, W, 3)`` uint8 image: the quality team's segmenter, else the fallback."""
    segmenter = _quality_team_mask()
    if segmenter is not None:
        try:
            mask = np.asarray(segmenter(rgb))
            if mask.shape[:2] == rgb.shape[:2]:
                return mask.astype(bool) if mask.dtype == bool else mask > (mask.max() / 2 if mask.max() > 1 else 0.5)
        except Exception as exc:  # noqa: BLE001 - a segmenter bug must not stop reference images
            log.warning("quality segmentation failed, using the fallback mask: %s", exc)
    return fallback_lesion_mask(rgb)


# -- skin tone -----------------------------------------------------------------------------------------------


def skin_pixels(lab: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Lab pixels of skin around the lesion: outside a dilated mask, without hair/vignette and glare."""
    keep = np.ones(lab.shape[:2], dtype=bool)
    if mask is not None and mask.any():
        from scipy import ndimage

        keep &= ~ndimage.binary_dilation(mask, iterations=2)
    lightness = lab[..., 0]
    plausible = keep & (lightness > 15) & (lightness < 97)
    if plausible.sum() >= MIN_SKIN_PIXELS:
        keep = plausible
    return lab[keep]


def estimate_skin_tone(rgb: np.ndarray, mask: np.ndarray | None = None) -> SkinTone | None:
    """ITA of the non-lesion skin (median L*, median b*), or None when too little skin is visible.

    ``mask`` marks the lesion; when omitted it is computed with :func:`lesion_mask`.
    """
    arr = np.asarray(rgb)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {arr.shape}")
    if mask is None:
        mask = lesion_mask(arr)
    pixels = skin_pixels(rgb_to_lab(arr), mask)
    if len(pixels) < MIN_SKIN_PIXELS:
        return None
    lightness, b = float(np.median(pixels[:, 0])), float(np.median(pixels[:, 2]))
    ita = float(ita_degrees(lightness, b))
    category, fitz = ita_category(ita)
    return SkinTone(ita=ita, category=category, fitzpatrick=fitz, lightness=lightness, b=b, pixels=len(pixels))
