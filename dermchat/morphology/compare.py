"""Change over time (the E of ABCDE): the same spot in an earlier and a later photo, described and compared.

What counts as a change was set so that the same photo turned, resized by 10% or lit differently reads as
"no clear change", while a 30% larger spot or a new dark-brown patch does (``bench-morphology`` measures both):

* size: the lesion's share of the frame moved by more than ``AREA_CHANGE`` (relative). The share, not pixels,
  so a photo saved at another resolution compares; a different distance or zoom does not, hence the warning;
* colours: a colour covering at least ``NEW_COLOUR_SHARE`` now that was below the naming threshold before, or
  a colour's share of the spot moved by at least ``COLOUR_SHIFT``;
* shape and border are shown then-vs-now; they are noisier, so they never decide "changed" on their own.

Growth and a new or spreading colour are red flags: the turn's triage goes to "see a doctor".
The photos must be taken the same way; the comparison says when they visibly were not (frame shape, where the
spot sits in the frame, skin brightness or colour).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from dermchat.morphology.colours import COLOURS, MIN_SHARE
from dermchat.morphology.describe import Morphology, describe

if TYPE_CHECKING:
    from PIL import Image

AREA_CHANGE = 0.20
"""Relative change of the lesion's frame share counted as growth or shrinking."""

NEW_COLOUR_SHARE = 0.08
"""A colour is new when it covers at least this share now and was below ``MIN_SHARE`` before."""

COLOUR_SHIFT = 0.10
"""A colour's share of the spot moving by this much (absolute) is a colour change."""

LIT_COLOUR_SHIFT = 0.4
"""``COLOUR_SHIFT`` and ``NEW_COLOUR_SHARE`` when the lighting visibly differs (:func:`lighting_differs`): a
brighter, warmer lamp saturates the skin's red channel, the skin reference under-reads the light and the spot's
reddish browns are renamed (dev pairs: the share of one colour moved by up to 0.36 in 95% of re-lit
training-split photos; an added dark-brown patch moves dark brown by 0.27 in half of them). So under visibly
different light only a large colour change is called, and the summary says why smaller ones are not."""

SATURATED = 250
"""A skin colour channel at or above this level is washed out (over-exposed)."""

LIGHTING_TOLERANCE = 0.12
"""Relative difference of the skin's brightness (or of one colour channel against the others) called visible."""

FRAMING_TOLERANCE = 0.12
"""Difference of frame aspect ratio (relative) or of the spot's distance from the frame centre called visible."""

SAME_WAY = (
    "Both photos need to be taken the same way (same distance, angle and light) for this comparison to mean anything."
)


@dataclass(frozen=True)
class Comparison:
    """Earlier vs later descriptors, what changed, and whether the photos were visibly taken differently."""

    earlier: Morphology
    later: Morphology
    area_change: float
    grew: bool
    shrank: bool
    new_colours: list[str]
    lost_colours: list[str]
    colour_shifts: dict[str, float]
    changed: bool
    red_flag: bool
    warnings: list[str] = field(default_factory=list)
    summary: str = ""

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["earlier"] = self.earlier.as_dict()
        out["later"] = self.later.as_dict()
        out["then_vs_now"] = then_vs_now(self.earlier, self.later)
        return out


def then_vs_now(earlier: Morphology, later: Morphology) -> dict[str, list[Any]]:
    """The descriptors a reader compares, as [then, now] pairs."""
    keys = ("mask_area_share", "diameter_px", "colours", "asymmetry", "border", "blue_white_veil", "tds")
    return {key: [getattr(earlier, key), getattr(later, key)] for key in keys}


def compare(earlier: Image.Image | np.ndarray, later: Image.Image | np.ndarray, outline: str = "auto") -> Comparison:
    """Describe both photos (masks estimated with ``outline``) and compare them; raises ``ValueError`` for
    unusable input."""
    return compare_descriptors(describe(earlier, outline=outline), describe(later, outline=outline))


def compare_descriptors(earlier: Morphology, later: Morphology) -> Comparison:
    """The comparison of two descriptor sets (each photo described on its own)."""
    warnings = photo_warnings(earlier, later)
    if not (earlier.lesion_found and later.lesion_found):
        missing = "earlier" if not earlier.lesion_found else "later"
        return Comparison(
            earlier,
            later,
            0.0,
            False,
            False,
            [],
            [],
            {},
            False,
            False,
            warnings,
            f"No distinct spot was found in the {missing} photo, so the two cannot be compared. " + SAME_WAY,
        )
    area_change = later.mask_area_share / max(earlier.mask_area_share, 1e-6) - 1.0
    grew, shrank = area_change > AREA_CHANGE, area_change < -AREA_CHANGE / (1 + AREA_CHANGE)
    before, after = earlier.colour_shares, later.colour_shares
    relit = lighting_differs(earlier, later)
    appear, shift = (LIT_COLOUR_SHIFT, LIT_COLOUR_SHIFT) if relit else (NEW_COLOUR_SHARE, COLOUR_SHIFT)
    new = [c for c in COLOURS if after.get(c, 0) >= appear and before.get(c, 0) < MIN_SHARE]
    lost = [c for c in COLOURS if before.get(c, 0) >= appear and after.get(c, 0) < MIN_SHARE]
    shifts = {
        c: round(after.get(c, 0) - before.get(c, 0), 3)
        for c in COLOURS
        if abs(after.get(c, 0) - before.get(c, 0)) >= shift and c not in new and c not in lost
    }
    spreading = [c for c, d in shifts.items() if d > 0]
    changed = grew or shrank or bool(new or lost or shifts)
    red_flag = grew or bool(new or spreading)
    if relit:
        warnings = [
            *warnings,
            f"Because of that, only colour changes covering at least {LIT_COLOUR_SHIFT:.0%} of the spot are called.",
        ]
    summary = _summary(area_change, grew, shrank, new, lost, shifts, earlier, later, warnings)
    return Comparison(
        earlier, later, round(area_change, 4), grew, shrank, new, lost, shifts, changed, red_flag, warnings, summary
    )


def photo_warnings(earlier: Morphology, later: Morphology) -> list[str]:
    """Visible differences in how the photos were taken (each one makes the comparison less reliable)."""
    out: list[str] = []
    ratios = [max(m.frame_size) / max(min(m.frame_size), 1) for m in (earlier, later)]
    if abs(ratios[1] / ratios[0] - 1) > FRAMING_TOLERANCE:
        out.append("The two photos have a different shape of frame, so they were probably taken differently.")
    if (
        earlier.lesion_found
        and later.lesion_found
        and abs(earlier.centre_offset - later.centre_offset) > FRAMING_TOLERANCE
    ):
        out.append("The spot sits in a different part of the frame in the two photos.")
    out.extend(_lighting_warnings(earlier, later))
    return out


def _lighting_warnings(earlier: Morphology, later: Morphology) -> list[str]:
    """Brightness, colour cast or over-exposure of the skin that differ between the photos."""
    if not (earlier.skin_rgb and later.skin_rgb):
        return []
    a, b = np.asarray(earlier.skin_rgb), np.asarray(later.skin_rgb)
    washed = [int((a >= SATURATED).sum()), int((b >= SATURATED).sum())]
    if washed[0] != washed[1]:
        which = "later" if washed[1] > washed[0] else "earlier"
        return [
            f"The lighting differs: the skin looks washed out (over-exposed) in the {which} photo, so "
            "its colours cannot be compared closely."
        ]
    readable = (a < SATURATED) & (b < SATURATED)
    if not readable.any():
        return []
    brightness = b[readable].mean() / max(a[readable].mean(), 1.0) - 1
    if abs(brightness) > LIGHTING_TOLERANCE:
        return [
            f"The lighting differs: the skin is {abs(brightness):.0%} "
            f"{'brighter' if brightness > 0 else 'darker'} in the later photo."
        ]
    if np.abs((b / b.mean()) / (a / a.mean()) - 1).max() > LIGHTING_TOLERANCE:
        return ["The lighting has a different colour in the two photos (warmer or cooler)."]
    return []


def lighting_differs(earlier: Morphology, later: Morphology) -> bool:
    """Whether the skin around the spot visibly differs in brightness, colour or exposure between the photos."""
    return bool(_lighting_warnings(earlier, later))


def _summary(
    area_change: float,
    grew: bool,
    shrank: bool,
    new: list[str],
    lost: list[str],
    shifts: dict[str, float],
    earlier: Morphology,
    later: Morphology,
    warnings: list[str],
) -> str:
    """The change in plain words, then the same-way warning and any visible differences."""
    bits: list[str] = []
    if grew:
        bits.append(f"The spot looks bigger in the later photo (about {area_change:.0%} more of the frame).")
    elif shrank:
        bits.append(f"The spot looks smaller in the later photo (about {-area_change:.0%} less of the frame).")
    if new:
        bits.append(f"A new colour appeared: {_listed(new)}.")
    if lost:
        bits.append(f"A colour is no longer seen: {_listed(lost)}.")
    for colour, delta in shifts.items():
        then, now = earlier.colour_shares.get(colour, 0), later.colour_shares.get(colour, 0)
        word = "more" if delta > 0 else "less"
        bits.append(f"More of the spot is {colour} now" if delta > 0 else f"Less of the spot is {colour} now")
        bits[-1] += f" ({then:.0%} then, {now:.0%} now; {word})."
    if not bits:
        bits.append("No clear change between the two photos in size or colours.")
    if grew or new or any(d > 0 for d in shifts.values()):
        bits.append("A spot that grows or changes colour should be checked by a doctor.")
    return " ".join([*bits, SAME_WAY, *warnings])


def _listed(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
