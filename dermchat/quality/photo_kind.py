"""Dermoscope close-up or ordinary photo? Cues the quality step can see without any classifier.

Why: the offline image model only knows dermoscopic close-ups (HAM10000). A phone photo of a dark spot on plain
skin came back "Mole 96%, probably harmless"; it should have been "this photo can't be assessed". Three cues,
each measured by the quality step already:

* the dermoscope's field stop: a dark, colourless surround joined to the frame border (``vignette_mask``) in
  all four corners;
* the skin's hue: dermoscopy's polarised light turns skin pink to purple (HAM10000 skin hue median about 5
  degrees in CIELAB a*b*), while ordinary photos of skin are orange to yellow (about 40 to 70 degrees);
* field of view / magnification: a dermoscopic close-up is filled by the lesion, while a phone photo shows a
  small spot with much skin (or background) around it.

The judgement is a weighted score of the cues: a field stop alone or a dermoscopic hue alone is enough; a filled
frame alone is not. Limits are set on HAM10000 images (they must pass) and checked against
ordinary photos in the tests (skimage's astronaut and cat, a drawn spot on plain skin).
"""

from __future__ import annotations

import math

from dermchat.quality.measures import Measurements, Regions

CORNER = 0.125
"""Side of each corner patch, as a share of the frame's sides."""
CORNER_EMPTY = 0.3
CORNER_FULL = 0.7
"""Share of the *least* covered corner patch in the dark surround at which the field-stop cue starts and is full:
a dermoscope's round field stop darkens all four corners, while a dark background in an ordinary photo (the
astronaut's studio, a table under a cup) rarely fills every corner."""
HUE_DERMOSCOPIC = 30.0
HUE_CLINICAL = 45.0
"""Skin hue (degrees, CIELAB) at or below which the hue cue is full, and at or above which it is empty."""
FILL_FULL = 0.06
FILL_NONE = 0.015
"""Lesion share of the frame at or above which the close-up cue is full, and at or below which it is empty."""
WEIGHTS = {"surround": 0.45, "hue": 0.35, "fill": 0.30}
"""A field stop alone, or a pink hue with a filled frame, is enough; the weights sum past 1 on purpose."""
DERMOSCOPIC_SCORE = 0.35
"""Below this score the photo is judged not dermoscopic: a filled frame alone (0.30) is not enough, since the
lesion estimate finds a dark blob in almost any picture (a cat's stripes, a cup of coffee)."""
MIN_BRIGHT = 0.05
"""Skin brightness below which hue says nothing: too dark to judge (the exposure reasons speak instead)."""


def _ramp(value: float, empty: float, full: float) -> float:
    return min(1.0, max(0.0, (value - empty) / (full - empty)))


def _corner_surround(regions: Regions) -> float:
    """The surround's share of the least covered of the four corner patches (0 when there is no surround)."""
    outside = ~regions.field
    h, w = outside.shape
    ch, cw = max(1, round(h * CORNER)), max(1, round(w * CORNER))
    corners = (outside[:ch, :cw], outside[:ch, -cw:], outside[-ch:, :cw], outside[-ch:, -cw:])
    return float(min(c.mean() for c in corners))


def dermoscopy_cues(m: Measurements, regions: Regions) -> dict[str, float]:
    """Each cue in 0..1 (1 = looks dermoscopic), plus the raw values behind them."""
    a, b = m.cast_ab
    hue = math.degrees(math.atan2(b, a))
    surround = _corner_surround(regions)
    fill = m.lesion_fraction or 0.0
    return {
        "surround": _ramp(surround, CORNER_EMPTY, CORNER_FULL),
        "hue": _ramp(-hue, -HUE_CLINICAL, -HUE_DERMOSCOPIC),
        "fill": _ramp(fill, FILL_NONE, FILL_FULL),
        "surround_share": surround,
        "hue_deg": hue,
        "lesion_share": fill,
    }


def judge(m: Measurements, regions: Regions) -> tuple[bool | None, float | None, str]:
    """(dermoscopic, score, clinician detail); ``None`` when the photo is too dark to judge."""
    if m.bright_level < MIN_BRIGHT:
        return None, None, "not judged (too dark to read the skin's hue)"
    cues = dermoscopy_cues(m, regions)
    score = min(1.0, sum(WEIGHTS[k] * cues[k] for k in WEIGHTS))
    dermoscopic = score >= DERMOSCOPIC_SCORE
    detail = (
        f"{'dermoscopic' if dermoscopic else 'not dermoscopic (ordinary photo)'}, score {score:.2f} "
        f"(0 ordinary .. 1 dermoscopic; limit {DERMOSCOPIC_SCORE:.2f}): dark field-stop surround in "
        f"{cues['surround_share']:.0%} of the least covered corner, skin hue {cues['hue_deg']:.0f} deg (dermoscopic pink below "
        f"{HUE_DERMOSCOPIC:.0f}, ordinary photos above {HUE_CLINICAL:.0f}), lesion {cues['lesion_share']:.1%} of the frame"
    )
    return dermoscopic, round(score, 3), detail
