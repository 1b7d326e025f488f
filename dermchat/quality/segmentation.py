"""Classical lesion and skin region estimates, shared by the quality check and the reference-image steps.

Why classical: no segmentation weights can be downloaded here, and a transparent pipeline is easy to audit.
The steps answer the failure modes seen on HAM10000 (measured on its expert masks):

* the black surround of a dermatoscope (the *vignette*) is dark like a lesion: it is removed first, but only
  where it is colourless or nearly black, so a brown lesion reaching the frame edge is not cut away with it;
* hairs are thin dark lines that Otsu happily joins to the lesion: a black-hat filter finds and inpaints them;
* uneven lighting makes one side of the photo darker than the lesion: a quadratic background surface fitted to
  the brighter half of the pixels is subtracted before thresholding, and the darkness map also carries a
  colour ratio (red against green and blue) that shading cannot change, for lighting no smooth surface fits;
* among the candidate regions, a wide faintly shaded band must not outweigh a small clearly dark lesion:
  candidates are scored by their *squared* excess darkness;
* a small lesion barely moves a two-class Otsu threshold, which then splits healthy skin in two: a three-class
  Otsu gives a dark *core*, and the core is only grown into the middle class when the growth stays compact;
* thresholds set on the whole frame let a small lesion leak into its halo and into nearby hair or shading
  (HAM small lesions came out several times too large): a small estimate is re-thresholded *locally*, halfway
  between its own darkness and that of the skin ring around it.

``lesion_mask`` works at any size: it measures a copy whose long side is at most ``SEGMENT_MAX_SIDE`` and
scales the mask back, so a 12-megapixel photo costs the same as a thumbnail.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# OpenCV is imported inside the functions that use it, so importing this module stays cheap.

SEGMENT_MAX_SIDE = 256
"""Long side (pixels) the segmentation works at; HAM images (200x150) are used as they are."""

_VIGNETTE_RATIO = 0.6
"""Pixels darker than this fraction of the bright centre, joined to the border, are dermatoscope surround."""

_VIGNETTE_MAX_CHROMA = 12.0
"""CIELAB chroma below which a dark border pixel can be surround. Lesions touching the frame edge were taken for
surround (and cut out of the field) before this test: it raised lesion IoU and off-centre detection on HAM10000."""

_VIGNETTE_DEEP = 0.3
"""Border pixels darker than this fraction of the bright centre are surround whatever their colour."""

_HAIR_CONTRAST = 10
"""Black-hat response (grey levels) above which a thin dark structure is treated as hair."""

_RATIO_WEIGHT = 0.6
"""Weight of the shading-free colour ratio log(R / mean(G, B)) added to the green+blue darkness. Set on
HAM10000 images outside the benchmark's seed-0 sample: it raised lesion IoU on shifted (off-centre) photos,
whose lighting is no longer a smooth surface the background fit can remove."""

_RATIO_EPS = 0.02
"""Offset keeping the colour ratio finite and quiet in near-black pixels."""

_MAX_GROWTH = 8.0
"""The core may grow into the faint lesion rim up to this many times its own area."""

_LOCAL_REFINE_MAX_AREA = 0.15
"""Estimates covering at most this share of the frame get the local re-threshold. Larger lesions have their
own light and dark parts, which a local threshold would split (measured: it lowers IoU on them)."""

_LOCAL_RING = 1.0
"""Width of the skin ring used for the local threshold, in lesion radii (sqrt(area / pi))."""


def to_rgb_uint8(rgb: np.ndarray) -> np.ndarray:
    """Accept HxWx3/4 uint8 or float [0,1] (or HxW grey) and return contiguous HxWx3 uint8."""
    arr = np.asarray(rgb)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"expected an RGB image array of shape HxWx3, got {arr.shape}")
    arr = arr[..., :3]
    if arr.dtype != np.uint8:
        arr = np.clip(np.round(arr.astype(np.float32) * (255.0 if arr.max() <= 1.0 else 1.0)), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(arr)


def _shrink(rgb: np.ndarray, max_side: int) -> np.ndarray:
    """Area-downscale so the long side is at most ``max_side`` (never upscales)."""
    h, w = rgb.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1.0:
        return rgb
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    import cv2

    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def _grow(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Scale a boolean mask back to ``shape`` (h, w)."""
    if mask.shape == shape:
        return mask
    import cv2

    up = cv2.resize(mask.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
    return up.astype(bool)


def _ellipse(size: int) -> np.ndarray:
    import cv2

    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))


def vignette_mask(rgb: np.ndarray) -> np.ndarray:
    """Dark surround joined to the image border (the dermatoscope's field stop), slightly dilated.

    Relative to the bright centre, so a darkened photo keeps the same surround.
    Returns an all-False mask when the 'surround' would cover most of the frame (a dark photo, not a vignette).
    """
    import cv2

    rgb = to_rgb_uint8(rgb)
    h, w = rgb.shape[:2]
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    centre = grey[h // 4 : max(h // 4 + 1, 3 * h // 4), w // 4 : max(w // 4 + 1, 3 * w // 4)]
    bright = float(np.percentile(centre, 90))
    if bright < 8:  # nothing to be relative to: an almost black frame
        return np.zeros((h, w), bool)
    # The surround is black or grey; a pigmented lesion reaching the frame edge is as dark relative to the
    # skin but keeps its brown/red colour, so only colourless (or nearly black) dark pixels count.
    lab = cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
    colourless = np.hypot(lab[..., 1], lab[..., 2]) < _VIGNETTE_MAX_CHROMA
    dark = ((grey < _VIGNETTE_RATIO * bright) & (colourless | (grey < _VIGNETTE_DEEP * bright))).astype(np.uint8)
    n, labels = cv2.connectedComponents(dark)
    if n < 2:
        return np.zeros((h, w), bool)
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    surround = np.isin(labels, edge[edge > 0])
    if surround.any():
        k = max(3, int(round(min(h, w) / 30)) | 1)
        surround = cv2.dilate(surround.astype(np.uint8), _ellipse(k)) > 0
    if surround.mean() > 0.7:
        return np.zeros((h, w), bool)
    return surround


def _hair_kernel(rgb: np.ndarray) -> int:
    h, w = rgb.shape[:2]
    return max(5, int(round(min(h, w) / 17)) | 1)


def hair_mask(rgb: np.ndarray) -> np.ndarray:
    """Thin dark lines (hairs) by a black-hat: darker than the closing of the image over a hair-wide kernel.

    Shared by hair removal before segmentation and by the noise estimate, which must not read hairs as grain.
    """
    import cv2

    grey = cv2.cvtColor(to_rgb_uint8(rgb), cv2.COLOR_RGB2GRAY)
    blackhat = cv2.morphologyEx(grey, cv2.MORPH_BLACKHAT, _ellipse(_hair_kernel(rgb)))
    return blackhat > _HAIR_CONTRAST


def remove_hair(rgb: np.ndarray) -> np.ndarray:
    """DullRazor-style: black-hat finds thin dark lines, which are refilled from a morphological closing.

    The closing (max then min filter) is what the skin looks like with thin dark lines erased; copying it
    into the hair pixels is a cheap stand-in for inpainting (Telea inpainting costs 10x more here).
    """
    import cv2

    rgb = to_rgb_uint8(rgb)
    hair = hair_mask(rgb).astype(np.uint8)
    if not hair.any() or hair.mean() > 0.5:
        return rgb
    closed = cv2.morphologyEx(rgb, cv2.MORPH_CLOSE, _ellipse(_hair_kernel(rgb)))
    out = rgb.copy()
    out[hair > 0] = closed[hair > 0]
    return out


def _flatten(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Subtract a quadratic lighting surface fitted (twice, robustly) to the brighter half of valid pixels.

    ``x`` is 'darkness' (higher = darker), so the brighter half is the lower half of ``x``: mostly skin.
    """
    h, w = x.shape
    step = max(1, int(np.sqrt(h * w / 4000)))
    yy, xx = np.mgrid[0:h:step, 0:w:step]
    u = (xx / w - 0.5).ravel()
    v = (yy / h - 0.5).ravel()
    design = np.stack([np.ones_like(u), u, v, u * u, v * v, u * v], 1)
    xs = x[::step, ::step].ravel()
    inside = valid[::step, ::step].ravel()
    if inside.sum() < 12:
        return x
    chosen = inside & (xs <= np.percentile(xs[inside], 50))
    coef = np.zeros(6)
    for _ in range(2):
        if chosen.sum() < 12:
            break
        sub = design[chosen]
        # 6x6 normal equations: exact enough here and free of BLAS thread start-up costs of lstsq
        coef = np.linalg.solve(sub.T @ sub + 1e-9 * np.eye(6), sub.T @ xs[chosen])
        resid = xs - design @ coef
        chosen = inside & (resid <= np.percentile(resid[inside], 50))
    gy, gx = np.mgrid[0:h, 0:w]
    uu = gx / w - 0.5
    vv = gy / h - 0.5
    surface = coef[0] + coef[1] * uu + coef[2] * vv + coef[3] * uu * uu + coef[4] * vv * vv + coef[5] * uu * vv
    flattened: np.ndarray = (x - surface).astype(np.float32)
    return flattened


def _border_touch(mask: np.ndarray) -> float:
    """Mean fraction of each image edge covered by the mask (0 = floats free, 1 = fills every edge)."""
    return float((mask[0].mean() + mask[-1].mean() + mask[:, 0].mean() + mask[:, -1].mean()) / 4)


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    from scipy.ndimage import binary_fill_holes

    return np.asarray(binary_fill_holes(mask), dtype=bool)


def _darkness(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(darkness map with lighting removed, valid field) at working size: what the segmentation thresholds."""
    import cv2

    h, w = rgb.shape[:2]
    surround = vignette_mask(rgb)
    valid = ~surround
    if valid.sum() < 0.3 * h * w:
        valid = np.ones((h, w), bool)
    clean = remove_hair(rgb).astype(np.float32) / 255.0
    green_blue = (clean[..., 1] + clean[..., 2]) / 2
    # Green+blue darkness: melanin and blood both absorb there. Plus the red-to-green/blue log ratio: uneven
    # lighting scales all channels alike and cancels in the ratio, while pigment and blood raise it.
    ratio = np.log((clean[..., 0] + _RATIO_EPS) / (green_blue + _RATIO_EPS))
    darkness = -green_blue + _RATIO_WEIGHT * ratio
    blurred = cv2.GaussianBlur(darkness, (0, 0), max(1.0, min(h, w) / 75))
    return _flatten(blurred, valid), valid


@dataclass(frozen=True)
class _DarknessField:
    """A frame's darkness, where it is valid, how central each pixel is, and the opening kernel: what the
    thresholds below are tried on."""

    darkness: np.ndarray
    valid: np.ndarray
    centrality: np.ndarray
    kernel: np.ndarray

    def components(self, threshold: float) -> tuple[int, np.ndarray]:
        import cv2

        m = ((self.darkness > threshold) & self.valid).astype(np.uint8)
        m = cv2.morphologyEx(m, cv2.MORPH_OPEN, self.kernel)
        return cv2.connectedComponents(m)

    def pick(self, threshold: float) -> np.ndarray:
        """The component with the most central darkness above the threshold.

        The excess darkness is squared so that a small, clearly dark lesion outweighs a wide, faintly darker
        band of shaded skin that happens to pass the threshold (the usual loser before: off-centre lesions).
        """
        n, labels = self.components(threshold)
        if n < 2:
            return np.zeros(self.darkness.shape, bool)
        weight = self.centrality * np.maximum(self.darkness - threshold, 0) ** 2
        score = np.bincount(labels.ravel(), weights=weight.ravel(), minlength=n)
        score[0] = -1
        return _fill_holes(labels == int(np.argmax(score)))


def _segment_small(rgb: np.ndarray, spread: float = 0.25) -> np.ndarray:
    """The pipeline described in the module docstring, on an image already at working size."""
    from skimage.filters import threshold_multiotsu, threshold_otsu

    h, w = rgb.shape[:2]
    empty = np.zeros((h, w), bool)
    if h < 8 or w < 8:
        return empty
    darkness, valid = _darkness(rgb)
    values = darkness[valid]
    if float(values.max() - values.min()) < 0.02:  # flat frame: nothing stands out
        return empty
    yy, xx = np.mgrid[0:h, 0:w]
    centrality = np.exp(-(((xx - w / 2) / (spread * w)) ** 2 + ((yy - h / 2) / (spread * h)) ** 2) / 2)
    field = _DarknessField(darkness, valid, centrality, _ellipse(max(3, int(round(min(h, w) / 30)) | 1)))
    try:
        low, high = threshold_multiotsu(values, 3, nbins=128)
    except ValueError:  # too few distinct values for three classes
        low = high = float(threshold_otsu(values))
    core = field.pick(high)
    if not core.any():
        return core
    chosen = _grown_core(field, core, low, lambda: float(threshold_otsu(values)))
    if chosen.mean() <= _LOCAL_REFINE_MAX_AREA:
        chosen = _refine_locally(chosen, darkness, valid, field.kernel)
    return chosen


def _grown_core(field: _DarknessField, core: np.ndarray, low: float, otsu: Callable[[], float]) -> np.ndarray:
    """The darkest central blob grown to the lower threshold's components that touch it, if that stays compact
    (not many times the core, not running off the frame); else the two-class Otsu blob if it holds most of the core
    and is compact; else the core."""
    core_area = core.sum()
    core_touch = _border_touch(core)

    def compact(candidate: np.ndarray) -> bool:
        return bool(candidate.sum() <= _MAX_GROWTH * core_area and _border_touch(candidate) <= core_touch + 0.25)

    _n, labels = field.components(low)
    ids = np.unique(labels[core])
    grown = _fill_holes(np.isin(labels, ids[ids > 0]) | core)
    if compact(grown):
        return grown
    two_class = field.pick(otsu())
    if (two_class & core).sum() > 0.5 * core_area and compact(two_class):
        return two_class
    return core


def _refine_locally(mask: np.ndarray, darkness: np.ndarray, valid: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Re-threshold a small lesion estimate halfway between its median darkness and its surrounding ring's.

    The global thresholds are set by the whole frame (shading, hair, other spots), so a small lesion's
    boundary lands in its halo; the contrast with the skin right around it is what an observer's eye uses.
    Keeps the components that overlap the first estimate; returns the estimate unchanged when the local
    threshold finds nothing there.
    """
    import cv2

    radius = max(2, int(round(_LOCAL_RING * np.sqrt(mask.sum() / np.pi))))
    band = (cv2.dilate(mask.astype(np.uint8), _ellipse(2 * radius + 1)) > 0) & valid
    ring = band & ~mask
    if ring.sum() < 10:
        return mask
    threshold = 0.5 * (float(np.median(darkness[mask])) + float(np.median(darkness[ring])))
    local = cv2.morphologyEx(((darkness > threshold) & band).astype(np.uint8), cv2.MORPH_OPEN, kernel)
    return parts_touching(local > 0, mask)


def parts_touching(candidate: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """The connected parts of ``candidate`` that overlap ``seed``, holes filled; ``seed`` itself when none do.

    Why: a re-threshold around an estimate must refine *that* spot, not pick up other spots nearby.
    """
    import cv2

    _, labels = cv2.connectedComponents(candidate.astype(np.uint8))
    ids = np.unique(labels[seed & candidate])
    ids = ids[ids > 0]
    if ids.size == 0:
        return seed
    return _fill_holes(np.isin(labels, ids))


def lesion_mask(rgb: np.ndarray, spread: float = 0.25) -> np.ndarray:
    """Boolean HxW mask of the most central dark lesion (all False when nothing stands out).

    ``spread`` is the width (fraction of the frame) of the Gaussian preference for central candidates: the
    default suits photos aimed at a lesion; a wide spread finds the most prominent lesion wherever it is
    (used to judge framing).

    Accepts any HxWx3 uint8/float array; measured on a copy at most ``SEGMENT_MAX_SIDE`` pixels long.
    Validated against the HAM10000 expert masks by ``python -m dermchat bench-quality`` (IoU reported there).
    """
    rgb = to_rgb_uint8(rgb)
    small = _shrink(rgb, SEGMENT_MAX_SIDE)
    return _grow(_segment_small(small, spread), rgb.shape[:2])


def skin_likelihood_mask(rgb: np.ndarray) -> np.ndarray:
    """Pixels whose colour is plausible for skin (any tone, dermoscopic or not) or for a pigmented lesion.

    CIELAB rules: skin sits in the red-to-yellow hue wedge with some chroma; brown/dark lesions and freckles
    are darker but keep a warm hue. Grey, white, black, blue and green pixels are not skin.
    """
    import cv2

    f = to_rgb_uint8(rgb).astype(np.float32) / 255.0
    lab = cv2.cvtColor(f, cv2.COLOR_RGB2LAB)
    lightness, a, b = lab[..., 0], lab[..., 1], lab[..., 2]
    chroma = np.hypot(a, b)
    hue = np.degrees(np.arctan2(b, a))
    warm = (hue > -60) & (hue < 100)  # dermoscopic skin reaches -46 degrees (pink-purple)
    return warm & (chroma >= 5) & (lightness > 8) & (lightness < 98)


def skin_mask(rgb: np.ndarray, lesion: np.ndarray | None = None) -> np.ndarray:
    """Skin around the lesion: skin-coloured pixels, minus the lesion and the dermatoscope surround.

    This is the region other steps read skin tone from; pass ``lesion`` when it is already computed.
    """
    rgb = to_rgb_uint8(rgb)
    if lesion is None:
        lesion = lesion_mask(rgb)
    skin: np.ndarray = skin_likelihood_mask(rgb) & ~lesion & ~vignette_mask(rgb)
    return skin
