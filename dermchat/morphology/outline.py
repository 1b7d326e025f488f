"""The lesion outline the descriptors are measured on: the learned U-Net's mask when its weights load
(:mod:`dermchat.morphology.segmenter`), otherwise the quality check's mask refined by colour and smoothed.

``lesion_outline(rgb, method)`` picks: ``"auto"`` (learned, falling back to classical), ``"learned"`` or
``"classical"``. The rest of this docstring is about the classical outline.

Why a second pass: :func:`dermchat.quality.segmentation.lesion_mask` thresholds *darkness* (green + blue and a
red ratio), which is what a quality check needs (is there a spot, is it centred), but its edge lands inside
faint or reddish rims and in the halo of small spots. Shape and area descriptors need the edge an expert would
draw. The refinement re-thresholds in CIELAB *colour distance* from the skin right around the first estimate:

* skin colour = median Lab of a ring ``RING_GAP``-``RING_FAR`` lesion radii outside the first estimate (hair
  removed, dermatoscope surround excluded); lesion colour = median Lab of its core;
* a pixel belongs to the lesion when its distance from the skin colour is at least ``COLOUR_SHARE`` of the
  lesion-to-skin distance (a lower share than halfway, because expert outlines include the faint rim);
* only components touching the first estimate are kept (no new spots), holes are filled, and the outline is
  smoothed by a closing and an opening ``SMOOTH`` lesion radii wide (expert outlines are smooth; jagged
  threshold edges add noise to asymmetry and border).

Tuned on 200 training-split lesions of the classifier split (seed 0) against their HAM10000 expert masks:
median IoU 0.85 -> 0.88, lesion area within 15% of the expert's 57% -> 64%. ``bench-morphology`` reports the
figures on the validation lesions, which were not used here.
"""

from __future__ import annotations

import math

import numpy as np

RING_GAP = 0.2
"""Inner edge of the skin ring, in lesion radii outside the first estimate (skips the lesion's halo)."""

RING_FAR = 0.8
"""Outer edge of the skin ring (and how far the refined outline may reach), in lesion radii."""

COLOUR_SHARE = 0.3
"""A pixel is lesion when its CIELAB distance from the skin is at least this share of the lesion's."""

SMOOTH = 0.15
"""Radius of the smoothing closing/opening, in lesion radii."""

MIN_PIXELS = 12


def _disc(radius: int) -> np.ndarray:
    import cv2

    return np.asarray(cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1)))


def distance_outside(mask: np.ndarray) -> np.ndarray:
    """Euclidean distance (pixels) of every pixel from the mask, 0 inside: thresholding it is a dilation by a
    disc of any radius for the price of one pass (large-disc dilations were most of ``describe``'s time)."""
    import cv2

    return np.asarray(cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, 3))


OUTLINE_METHODS = ("auto", "learned", "classical")

OUTLINE_MAX_SIDE = 256
"""Long side (pixels) the outline is drawn at; a larger photo is area-shrunk first and the mask scaled back up.
The descriptors are measured at this size anyway (``describe.WORK_SIDE``), and at full size a 12-megapixel phone
photo took 0.5 s (learned) and 75 s (classical) to outline. HAM photos (200x150) are outlined as they are."""


def lesion_outline(rgb: np.ndarray, method: str = "auto") -> np.ndarray:
    """Boolean HxW lesion mask for measuring shape, border and size (all False when no spot is found).

    ``method="learned"`` raises ``RuntimeError`` when the segmenter's weights cannot be loaded; ``"auto"`` then
    falls back to the classical outline (logged once by :func:`~dermchat.morphology.segmenter.default_segmenter`).
    """
    from dermchat.morphology.segmenter import WEIGHTS_DIR, default_segmenter
    from dermchat.quality.segmentation import _shrink, to_rgb_uint8

    if method not in OUTLINE_METHODS:
        raise ValueError(f"unknown outline method {method!r}; choose one of {', '.join(OUTLINE_METHODS)}")
    rgb = to_rgb_uint8(rgb)
    small = _shrink(rgb, OUTLINE_MAX_SIDE)
    if method != "classical":
        segmenter = default_segmenter()
        if segmenter is not None:
            return scaled_to(segmenter.mask(small), rgb.shape[:2])
        if method == "learned":
            raise RuntimeError(f"the lesion segmenter's weights could not be loaded from {WEIGHTS_DIR}")
    return scaled_to(classical_outline(small), rgb.shape[:2])


def scaled_to(mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A boolean mask resized to ``shape`` (h, w) with a smooth (bilinear, halfway) edge rather than blocks."""
    import cv2

    if mask.shape == tuple(shape[:2]):
        return mask
    big = cv2.resize(mask.astype(np.uint8) * 255, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
    return np.asarray(big > 127)


def classical_outline(rgb: np.ndarray) -> np.ndarray:
    """The quality check's darkness mask, refined by colour distance from the skin and smoothed."""
    from dermchat.quality.segmentation import lesion_mask, to_rgb_uint8

    rgb = to_rgb_uint8(rgb)
    first = lesion_mask(rgb)
    if first.sum() < MIN_PIXELS:
        return first
    return smooth_outline(refine_by_colour(rgb, first))


def refine_by_colour(rgb: np.ndarray, first: np.ndarray) -> np.ndarray:
    """Re-threshold around ``first`` by CIELAB distance from the surrounding skin (see the module docstring).

    Returns ``first`` unchanged when there is too little skin around it or the threshold finds nothing there.
    """
    import cv2

    from dermchat.quality.segmentation import parts_touching, remove_hair, vignette_mask

    lab = cv2.cvtColor(remove_hair(rgb).astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
    lab = cv2.GaussianBlur(lab, (0, 0), 1.5)
    radius = math.sqrt(first.sum() / math.pi)
    field = ~vignette_mask(rgb)
    outside = distance_outside(first)
    reach = (outside <= max(4, int(RING_FAR * radius))) & field
    ring = reach & (outside > max(2, int(RING_GAP * radius)))
    if ring.sum() < 20:
        return first
    core = cv2.erode(first.astype(np.uint8), _disc(max(1, int(0.3 * radius)))) > 0
    skin = np.median(lab[ring], axis=0)
    lesion = np.median(lab[core if core.sum() >= 5 else first], axis=0)
    contrast = float(np.linalg.norm(lesion - skin))
    candidate = (np.linalg.norm(lab - skin, axis=2) > COLOUR_SHARE * contrast) & reach
    candidate = cv2.morphologyEx(candidate.astype(np.uint8), cv2.MORPH_OPEN, _disc(1)) > 0
    return parts_touching(candidate, first)


def smooth_outline(mask: np.ndarray) -> np.ndarray:
    """Closing then opening with a disc ``SMOOTH`` lesion radii wide, holes filled (the largest part kept)."""
    import cv2

    from dermchat.quality.segmentation import _fill_holes

    if mask.sum() < MIN_PIXELS:
        return mask
    kernel = _disc(max(1, round(SMOOTH * math.sqrt(mask.sum() / math.pi))))
    m8 = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_CLOSE, kernel)
    m8 = cv2.morphologyEx(m8, cv2.MORPH_OPEN, kernel)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(m8)
    if n < 2:
        return mask
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return _fill_holes(labels == largest)
