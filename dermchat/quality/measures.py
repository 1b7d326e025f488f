"""Raw, physically meaningful measurements of one photo, one function per quality aspect.

Everything here works on the reduced analysis copy (float32 RGB in [0, 1]) and on two regions found first:
the *field* (the frame minus any dermatoscope surround) and the *lesion*. The order matters and follows what
was measured on HAM10000: exposure and noise are judged before focus, because sensor noise makes an edge-based
focus measure read 'sharp' and blur hides noise. Focus is therefore measured on a copy smoothed just enough
to suppress the noise that was found.

No function here decides what is 'bad'; :mod:`dermchat.quality.assess` maps these numbers to scores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from dermchat.quality.segmentation import (
    lesion_mask,
    remove_hair,
    skin_likelihood_mask,
    vignette_mask,
)

# OpenCV is imported inside the functions that use it, so importing this module stays cheap.

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@dataclass
class Regions:
    """Where to measure: the usable field, the lesion inside it, and skin-coloured pixels."""

    field: np.ndarray
    lesion: np.ndarray
    skin: np.ndarray


@dataclass
class Measurements:
    """Raw values behind each reason (units in the field comments)."""

    original_size: tuple[int, int]  # (w, h) of the photo as received
    analysed_size: tuple[int, int]  # (w, h) of the copy measured
    effective_side: float  # sqrt(w*h) of the original photo, pixels
    bright_level: float  # 75th percentile luma of the field, 0..1
    dark_fraction: float  # field fraction with luma < 0.08
    clipped_fraction: float  # clipped field share, or washed-out excess if larger (glare excluded)
    glare_fraction: float  # field fraction in small, bright, colourless spots
    noise_sigma: float  # luma noise standard deviation, 0..1 scale
    blockiness: float  # JPEG 8x8 grid step excess over the typical step, full-resolution centre crop; 0 = none
    blur_sigma: float  # equivalent Gaussian blur sigma, pixels of the analysis copy
    blur: float  # Crete-Roffet re-blur index, 0 sharp .. 1 flat
    blur_anisotropy: float  # spread of the re-blur index over four directions
    blur_direction_deg: float | None  # direction of strongest blur (motion streak), degrees
    cast_distance: float  # CIELAB a*b* distance of the skin chroma from the skin locus
    cast_ab: tuple[float, float]  # mean a*, b* of the skin around the lesion
    skin_fraction: float  # field fraction of skin-coloured pixels (after undoing under-exposure)
    luma_spread: float  # standard deviation of luma in the field at normal brightness (0 = a uniform frame)
    lesion_fraction: float | None  # frame fraction covered by the lesion estimate
    lesion_bbox: tuple[float, float, float, float] | None  # normalised x0, y0, x1, y1
    lesion_offset: float  # lesion centroid distance from the frame centre, 0 centre .. 1 corner
    lesion_cut: float  # fraction of the lesion outline lying on one side's frame edge
    notes: list[str] = field(default_factory=list)


def luma(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma of a float RGB image."""
    return rgb @ _LUMA


DARK_FIELD_LEVEL = 0.45
"""Skin brightness (75th percentile luma) below which the lesion is segmented on the brightness-lifted copy.
Clean HAM10000 photos (light skin) are almost all brighter: bench-quality's clean figures did not change."""


def lift_gain(level: float) -> float:
    """Gain (1..8) that brings a field of skin brightness ``level`` (0..1) up to a normal 0.7.

    Darkness, from dim light or from darker skin, shrinks chroma and contrast; measures that need colour or
    contrast are judged on the lifted values so that neither reads as 'not skin'.
    """
    return min(8.0, max(1.0, 0.7 / max(level, 1e-3)))


def find_regions(rgb8: np.ndarray) -> Regions:
    """Field, lesion and skin masks for the analysis copy (uint8 RGB).

    Skin colour is judged after scaling a dark photo up to normal brightness (at most 8x): darkness shrinks
    chroma, and a dim photo of skin should be called 'too dark', not 'not skin'. The lesion is also sought on
    that lifted copy when the field is dark (darker skin, or a dim photo): the segmentation's contrast
    thresholds are in grey levels, and on dark skin a lesion filling the frame was found as a small off-centre
    spot (a false 'framing' retake request).
    """
    surround = vignette_mask(rgb8)
    field_mask = ~surround
    if field_mask.sum() < 0.3 * field_mask.size:
        field_mask = np.ones_like(field_mask)
    level = float(np.percentile(luma(rgb8.astype(np.float32))[field_mask], 75)) / 255.0
    gain = lift_gain(level)
    lifted = rgb8 if gain == 1.0 else np.clip(rgb8.astype(np.float32) * gain, 0, 255).astype(np.uint8)
    lesion = lesion_mask(lifted if level < DARK_FIELD_LEVEL else rgb8) & field_mask
    skin = skin_likelihood_mask(lifted) & field_mask
    return Regions(field=field_mask, lesion=lesion, skin=skin)


WASHED_OUT_LEVEL = 0.83  # skin brightness (75th percentile luma); HAM10000's 95th percentile is 0.78
GLARE_SKIN_LIMIT = 0.9  # skin brightness at which bright spots stop counting as glare at all
GLARE_PEAK = 0.98  # a reflection's centre is clipped: median-filtered luma at least this bright


def glare_weight(bright_level: float) -> float:
    """How much bright spots count as glare (1) rather than as part of over-exposure (0).

    On well-exposed skin a clipped spot is a reflection; once the skin itself is washed out, clipped spots
    are simply the brightest parts of an over-exposed photo. Continuous, so scores move smoothly.
    """
    return float(min(1.0, max(0.0, (GLARE_SKIN_LIMIT - bright_level) / 0.07)))


def exposure(y: np.ndarray, rgb: np.ndarray, regions: Regions, glare: np.ndarray) -> tuple[float, float, float]:
    """(bright_level, dark_fraction, clipped_fraction) over the field.

    The 75th percentile is the brightness of the skin rather than of the (dark) lesion, so a large dark
    lesion does not read as under-exposure. Clipping counts white-out (luma) or two saturated channels, not
    one: pink dermoscopic skin often saturates red alone and a colour cast saturates one channel, neither of
    which is over-exposure; a washed-out skin level counts even before clipping. Glare spots count as
    glare rather than clipping while the skin is well exposed (see ``glare_weight``). The third value is
    the larger of the clipped share and the washed-out excess.
    """
    f = regions.field
    yf = y[f]
    bright = float(np.percentile(yf, 75)) if yf.size else 0.0
    dark = float((yf < 0.08).mean()) if yf.size else 1.0
    import cv2

    peak = cv2.medianBlur(y, 3)  # single noisy pixels are not clipping
    two_channels = cv2.medianBlur(((rgb >= 0.98).sum(axis=2) >= 2).astype(np.uint8), 3) > 0
    clipped = ((peak >= 0.96) | two_channels) & f
    weight = glare_weight(bright)
    clipped_px = (clipped & ~glare).sum() + (1.0 - weight) * (clipped & glare).sum()
    clipped_share = float(clipped_px / max(1, f.sum()))
    # Washed out: the skin itself is brighter than any well-exposed photo of skin, even before clipping.
    washed = max(0.0, (bright - WASHED_OUT_LEVEL) * 2.5)
    return bright, dark, max(clipped_share, washed)


def glare_spots(y: np.ndarray, rgb: np.ndarray, regions: Regions) -> np.ndarray:
    """Specular highlights: small spots much brighter than their surroundings and nearly colourless.

    A white top-hat (image minus its opening) keeps bright structures smaller than the kernel, so a
    uniformly over-exposed photo (large clipped areas) does not count as glare.
    """
    import cv2

    h, w = y.shape
    k = max(5, int(round(min(h, w) / 5)) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (k, k))  # separable: fast even for large k
    smooth = cv2.medianBlur(y, 3)  # isolated noisy pixels are not reflections
    tophat = cv2.morphologyEx(smooth, cv2.MORPH_TOPHAT, kernel)
    saturation = cv2.medianBlur(np.ascontiguousarray(rgb.max(axis=2) - rgb.min(axis=2)), 3)
    # Brighter than the pale skin itself: white skin beside a dark lesion has a large top-hat, yet no glare.
    skin_top = float(np.percentile(smooth[regions.field], 90)) if regions.field.any() else 0.8
    floor = max(0.9, min(0.97, skin_top + 0.04))  # reflections are (nearly) clipped; white scars are not
    background = smooth - tophat  # the opening: brightness of the surface under each spot
    spots = (tophat > 0.12) & (smooth > floor) & (saturation < 0.22) & regions.field
    spots = (spots & (background < 0.88)).astype(np.uint8)  # on a blown-out surface it is over-exposure
    if not spots.any():
        none_found: np.ndarray = spots.astype(bool)
        return none_found
    # Reflections are small: a large bright patch is pale skin or a scar (or over-exposure), not glare.
    # They are also clipped at their centre (the light source's own image saturates the sensor); whitish
    # structures of very pale skin or a blue-white veil come close to white but stay below it (on HAM10000
    # they were the clean photos flagged for glare).
    n, labels, stats, _ = cv2.connectedComponentsWithStats(spots)
    peak = np.zeros(n, np.float32)
    inside = spots > 0
    np.maximum.at(peak, labels[inside], smooth[inside])
    keep = np.zeros(n, bool)
    keep[1:] = (stats[1:, cv2.CC_STAT_AREA] <= 0.03 * h * w) & (peak[1:] >= GLARE_PEAK)
    spots = keep[labels].astype(np.uint8)
    if spots.any():
        spots = cv2.dilate(spots, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3)))
    glare: np.ndarray = (spots > 0) & regions.field
    return glare


def _hairless_luma(rgb8: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Luma with hairs erased (DullRazor, ``remove_hair``) for the noise estimate: every hair edge is a sharp
    step the noise kernel answers like grain, and a hairy photo was asked for "more light"."""
    cleaned = remove_hair(rgb8)
    return y if cleaned is rgb8 else luma(cleaned.astype(np.float32) / 255.0).astype(np.float32)


def noise_sigma(y: np.ndarray, regions: Regions) -> float:
    """Immerkaer's fast noise estimate, restricted to the flattest half of the field.

    The Laplacian-difference kernel cancels smooth shading; keeping only low-gradient pixels keeps skin
    texture and lesion edges from being counted as noise. ``measure`` passes the luma with hairs erased.
    """
    import cv2

    kernel = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)
    response = np.abs(cv2.filter2D(y, -1, kernel, borderType=cv2.BORDER_REFLECT))
    gx = cv2.Sobel(y, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(y, cv2.CV_32F, 0, 1, ksize=3)
    grad = np.hypot(gx, gy)
    inner = regions.field.copy()
    inner[:2] = inner[-2:] = False
    inner[:, :2] = inner[:, -2:] = False
    inner &= (y > 0.03) & (y < 0.97)  # clipped pixels carry no noise
    if inner.sum() < 50:
        return 0.0
    flat = inner & (grad <= np.percentile(grad[inner], 50))
    return float(math.sqrt(math.pi / 2) / 6 * response[flat].mean())


def luma_u8(rgb8: np.ndarray) -> np.ndarray:
    """BT.601 luma (float32, 0..1) of a uint8 RGB array, cheaply: ``luma`` on a float copy costs ~20 ms for a
    768-px crop, OpenCV's 8-bit conversion rounds to whole grey levels (noise as large as the steps measured
    on smooth skin); 16-bit keeps 1/256 of a grey level at ~2 ms."""
    import cv2

    grey = cv2.cvtColor(np.multiply(rgb8, 256, dtype=np.uint16), cv2.COLOR_RGB2GRAY)
    luma: np.ndarray = grey.astype(np.float32) * np.float32(1.0 / 65280.0)
    return luma


BLOCK_STEP_FLOOR = 0.25 / 255.0
"""A quarter grey level, added to the typical in-block step before dividing by it (see ``blockiness``)."""


def blockiness(y: np.ndarray) -> float:
    """Strength of an 8-pixel block grid (heavy JPEG compression), 0 when there is none.

    Mean absolute step across columns (and rows) at each of the 8 grid phases: a compressed image has one
    phase with clearly larger steps. The excess of that phase is divided by the typical (median) phase plus
    ``BLOCK_STEP_FLOOR``: without the floor, smooth content (a phone photo of plain skin, whose neighbouring
    pixels differ by a fraction of a grey level) read a mild quality-70 JPEG as blocky (ratio up to 3.3), and
    blocks flattened completely by quality 3-5 gave a zero typical step and were read as 'no grid' at all.
    Only meaningful on the photo's own pixel grid (see ``imageprep.compression_crop``): any resize hides it.
    """
    h, w = y.shape
    if h < 32 or w < 32:
        return 0.0
    import cv2

    y = np.ascontiguousarray(y, dtype=np.float32)
    # Mean |step| per column and per row; OpenCV does this ~10x faster than numpy on a 768-px crop.
    column_steps = cv2.reduce(cv2.absdiff(y[:, 1:], y[:, :-1]), 0, cv2.REDUCE_AVG).ravel()
    row_steps = cv2.reduce(cv2.absdiff(y[1:], y[:-1]), 1, cv2.REDUCE_AVG).ravel()
    ratios = []
    for axis_diff in (column_steps, row_steps):
        n = axis_diff.size // 8 * 8
        phases = axis_diff[:n].reshape(-1, 8).mean(axis=0)
        rest = float(np.median(phases))
        ratios.append(max(0.0, float(phases.max()) - rest) / (rest + BLOCK_STEP_FLOOR))
    return float(np.mean(ratios))


def _reblur_index(
    y: np.ndarray, gx: np.ndarray, gy: np.ndarray, mask: np.ndarray, angle_deg: float, length: int = 9
) -> float:
    """Crete-Roffet blur index along one direction: how little a further blur changes the image (0..1).

    The image is blurred with a ``length``-pixel line at ``angle_deg``; the index is the share of the
    directional gradient (along the same angle) that this extra blur does *not* remove. A sharp image loses
    much of its gradient to the extra blur (low index); an already-blurred one hardly changes (high index).
    """
    import cv2

    theta = math.radians(angle_deg)
    c = length // 2
    kernel = np.zeros((length, length), np.float32)
    dx, dy = c * math.cos(theta), -c * math.sin(theta)
    cv2.line(kernel, (round(c - dx), round(c - dy)), (round(c + dx), round(c + dy)), 1.0, 1, cv2.LINE_AA)
    kernel /= kernel.sum()
    blurred = cv2.filter2D(y, -1, kernel, borderType=cv2.BORDER_REFLECT)
    bx = cv2.Sobel(blurred, cv2.CV_32F, 1, 0, ksize=1)
    by = cv2.Sobel(blurred, cv2.CV_32F, 0, 1, ksize=1)
    cos, sin = math.cos(theta), -math.sin(theta)
    d_orig = np.abs(cos * gx + sin * gy)[mask]
    d_blur = np.abs(cos * bx + sin * by)[mask]
    total = float(d_orig.sum())
    if total <= 1e-6:
        return 1.0
    kept = float(np.maximum(0.0, d_orig - d_blur).sum())
    return (total - kept) / total


_ANGLES: tuple[float, ...] = tuple(22.5 * k for k in range(8))


# Re-blur index of HAM10000 images (median of 40) after a Gaussian blur of the given sigma (pixels at a
# 150-px short side). Inverting it turns the index into an 'equivalent blur sigma', a unit that can be
# compared across smoothing steps and image sizes.
_BLUR_SIGMAS = np.array([0.0, 0.5, 0.8, 1.1, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0])
_BLUR_INDEX = np.array([0.384, 0.419, 0.488, 0.555, 0.641, 0.733, 0.802, 0.851, 0.907, 0.938])


def equivalent_sigma(index: float) -> float:
    """Gaussian sigma that gives a typical sharp image this re-blur index (0 when sharper than typical)."""
    if index >= _BLUR_INDEX[-1]:
        return float(_BLUR_SIGMAS[-1] + (index - _BLUR_INDEX[-1]) * 40.0)
    return float(np.interp(index, _BLUR_INDEX, _BLUR_SIGMAS))


def denoise_sigma(sigma_noise: float) -> float:
    """Gaussian smoothing applied before judging focus, just enough to silence the measured noise."""
    return 0.0 if sigma_noise <= 0.006 else min(2.0, 0.4 + 40.0 * sigma_noise)


def focus(y: np.ndarray, regions: Regions, sigma_noise: float) -> tuple[float, float, float, float | None]:
    """(equivalent blur sigma, re-blur index, anisotropy, blur direction), judged after the noise.

    Noise makes edges look crisp, so a noisy copy is smoothed first and that known smoothing is taken back
    out in quadrature from the equivalent sigma. Motion blur smears along one direction only, so the re-blur
    index differs between directions (anisotropy); an out-of-focus photo is blurred alike in every direction.
    Measured on the field eroded away from the dermatoscope rim (its sharp edge would read as detail).
    """
    import cv2

    smoothing = denoise_sigma(sigma_noise)
    work = cv2.GaussianBlur(y, (0, 0), smoothing) if smoothing > 0 else y
    h, w = y.shape
    k = max(11, int(round(min(h, w) / 20)) | 1)  # also keeps the 9-px blur away from the frame edge
    mask = (
        cv2.erode(
            regions.field.astype(np.uint8), np.ones((k, k), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0
        )
        > 0
    )
    if mask.sum() < 100:
        mask = np.ones_like(mask)
    gx = cv2.Sobel(work, cv2.CV_32F, 1, 0, ksize=1)
    gy = cv2.Sobel(work, cv2.CV_32F, 0, 1, ksize=1)
    values = [_reblur_index(work, gx, gy, mask, angle) for angle in _ANGLES]
    index = float(np.mean(values))
    spread = float(max(values) - min(values))
    direction = _ANGLES[int(np.argmax(values))] if spread > 0 else None
    sigma = equivalent_sigma(index)
    sigma = math.sqrt(max(0.0, sigma * sigma - smoothing * smoothing))
    return sigma, index, spread, direction


# Skin chroma locus (CIELAB a*, b*): the hue wedge of skin from very fair to very dark. Dermoscopic skin
# is pink to purple (HAM10000: hue -46..49 degrees, median 5), ordinary photos of skin are orange-yellow
# (about 30..70 degrees). Casts towards blue, green or cyan leave this wedge; magenta and yellow casts move
# along it and are caught by the chroma limits below instead. A colour cast moves the skin chroma out of this wedge.
SKIN_HUE_RANGE_DEG = (-55.0, 75.0)
SKIN_MIN_CHROMA = 8.0  # HAM10000 skin: 5th percentile 8.4, minimum 6.4
SKIN_MIN_CHROMA_FULL_L = 50.0  # lightness (L*) from which skin needs the full minimum chroma


def skin_min_chroma(lightness: float) -> float:
    """The least chroma plausible for skin of CIELAB lightness ``lightness``.

    Chroma shrinks with lightness: the darkest Monk skin tones (MST 9-10, L* about 15-21) have a chroma of
    only 4-7 under good light, so HAM10000's minimum (light skin) would call them a colour cast.
    """
    return SKIN_MIN_CHROMA * min(1.0, max(0.0, lightness) / SKIN_MIN_CHROMA_FULL_L)


# Beyond the hue wedge: skin reflects red most (red > green and red > blue under white light, for every skin
# tone, dermoscopic or not), and even vivid dermoscopic pink stays below these chroma limits.
MAX_SKIN_A = 45.0
MAX_SKIN_B = 28.0
GREEN_MARGIN = 0.02  # red must exceed green by this much (0-1 scale); HAM's 5th percentile is 0.05


def colour_cast(rgb: np.ndarray, regions: Regions) -> tuple[float, tuple[float, float]]:
    """(cast index, (median a*, median b*)) of the skin around the lesion; 0 = plausible skin colour.

    The index is the largest of: the CIELAB distance of the median skin chroma outside the skin hue wedge;
    by how much blue or green exceeds red (in % of full scale); by how much a* or b* exceed the most vivid
    skin seen. Mid-tones only: shadows and highlights carry little chroma information.
    """
    import cv2

    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)
    lightness = lab[..., 0]
    region = regions.field & ~regions.lesion & (lightness > 15) & (lightness < 97)
    if region.sum() < 30:
        region = regions.field & (lightness > 5)
    if region.sum() < 10:
        return 0.0, (0.0, 0.0)
    a = float(np.median(lab[..., 1][region]))
    b = float(np.median(lab[..., 2][region]))
    min_chroma = skin_min_chroma(float(np.median(lightness[region])))
    red, green, blue = (float(np.median(rgb[..., c][region])) for c in range(3))
    index = max(
        _distance_to_wedge(a, b, min_chroma),
        100.0 * (blue - red),
        100.0 * (green - red + GREEN_MARGIN),
        a - MAX_SKIN_A,
        b - MAX_SKIN_B,
        0.0,
    )
    return index, (a, b)


def _distance_to_wedge(a: float, b: float, min_chroma: float = SKIN_MIN_CHROMA) -> float:
    """Euclidean distance in the a*b* plane from (a, b) to the skin wedge (0 inside)."""
    chroma = math.hypot(a, b)
    hue = math.degrees(math.atan2(b, a))
    lo, hi = SKIN_HUE_RANGE_DEG
    if lo <= hue <= hi:
        return max(0.0, min_chroma - chroma)
    edge = math.radians(lo if _angle_gap(hue, lo) < _angle_gap(hue, hi) else hi)
    ux, uy = math.cos(edge), math.sin(edge)
    along = a * ux + b * uy
    if along <= min_chroma:
        return math.hypot(a - min_chroma * ux, b - min_chroma * uy)
    return abs(-a * uy + b * ux)


def _angle_gap(x: float, y: float) -> float:
    return abs((x - y + 180.0) % 360.0 - 180.0)


def lesion_geometry(lesion: np.ndarray) -> tuple[float | None, tuple[float, float, float, float] | None, float, float]:
    """(fraction, bbox, centroid offset, one-sided cut) of the lesion estimate in its frame."""
    h, w = lesion.shape
    if not lesion.any():
        return None, None, 0.0, 0.0
    ys, xs = np.nonzero(lesion)
    fraction = float(lesion.mean())
    bbox = (float(xs.min() / w), float(ys.min() / h), float((xs.max() + 1) / w), float((ys.max() + 1) / h))
    cx = (xs.mean() + 0.5) / w - 0.5
    cy = (ys.mean() + 0.5) / h - 0.5
    offset = float(min(1.0, math.hypot(cx, cy) / math.hypot(0.5, 0.5)))
    edges = np.array([lesion[0].mean(), lesion[-1].mean(), lesion[:, 0].mean(), lesion[:, -1].mean()])
    # A lesion filling the frame touches opposite edges alike; a lesion pushed out of frame touches one side.
    cut = float(max(edges[0] - edges[1], edges[1] - edges[0], edges[2] - edges[3], edges[3] - edges[2], 0.0))
    return fraction, bbox, offset, cut


def measure(
    rgb8: np.ndarray, original_size: tuple[int, int], full_crop: np.ndarray | None = None
) -> tuple[Measurements, Regions]:
    """All measurements for an analysis copy (uint8 RGB) of a photo of ``original_size`` (w, h).

    ``full_crop`` is a crop of the photo at full resolution (``imageprep.compression_crop``): compression is
    measured there. Without it, blocks are measured on the analysis copy only when it was not resized.
    """
    h, w = rgb8.shape[:2]
    rgb = rgb8.astype(np.float32) / 255.0
    y = luma(rgb).astype(np.float32)
    regions = find_regions(rgb8)
    glare = glare_spots(y, rgb, regions)
    bright, dark, clipped = exposure(y, rgb, regions, glare)
    sigma = noise_sigma(_hairless_luma(rgb8, y), regions)
    if full_crop is not None:
        blocks = blockiness(luma_u8(full_crop))
    else:
        blocks = blockiness(y) if (w, h) == original_size else 0.0
    blur_sigma, blur, anisotropy, direction = focus(y, regions, sigma)
    cast, ab = colour_cast(rgb, regions)
    fraction, bbox, offset, cut = lesion_geometry(regions.lesion)
    skin_fraction = float(regions.skin[regions.field].mean()) if regions.field.any() else 0.0
    # Contrast as it would be at normal brightness: dark skin (or a dim photo) is not a 'uniform frame'.
    spread = float(y[regions.field].std()) * lift_gain(bright) if regions.field.any() else 0.0
    return (
        Measurements(
            original_size=original_size,
            analysed_size=(w, h),
            effective_side=float(math.sqrt(original_size[0] * original_size[1])),
            bright_level=bright,
            dark_fraction=dark,
            clipped_fraction=clipped,
            glare_fraction=glare_weight(bright) * float(glare.sum() / max(1, regions.field.sum())),
            noise_sigma=sigma,
            blockiness=blocks,
            blur_sigma=blur_sigma,
            blur=blur,
            blur_anisotropy=anisotropy,
            blur_direction_deg=direction,
            cast_distance=cast,
            cast_ab=ab,
            skin_fraction=skin_fraction,
            luma_spread=spread,
            lesion_fraction=fraction,
            lesion_bbox=bbox,
            lesion_offset=offset,
            lesion_cut=cut,
        ),
        regions,
    )
