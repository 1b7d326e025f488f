"""Words for each quality reason: a label, a plain-language retake tip, and a technical line for clinicians.

Patient tips say what to *do* (one action, no jargon); clinician lines say what was *measured*, with the
number and the limit, so a clinician can judge whether the photo is still usable for their purpose.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReasonText:
    label: str
    patient_tip: str
    clinician: str  # str.format template; fields listed per reason in ``clinician_detail``


REASONS: dict[str, ReasonText] = {
    "focus": ReasonText(
        "Focus / blur",
        "The photo looks blurry. Hold the phone steady (rest your elbow on something), tap the spot on the "
        "screen to focus, and wait a moment before taking the picture.",
        "Blur equivalent to a Gaussian of sigma {value:.2f} px at 150-px frame height "
        "(re-blur index {blur:.2f}; problem above {limit:.2f}).",
    ),
    "underexposed": ReasonText(
        "Too dark",
        "The photo is too dark. Move to daylight or a well-lit room, or turn on more lights; avoid your own shadow.",
        "Under-exposed: skin brightness (75th percentile luma) {value:.2f} on 0-1, problem below {limit:.2f}; "
        "{dark:.0%} of the field is near black.",
    ),
    "overexposed": ReasonText(
        "Too bright / washed out",
        "The photo is too bright and some parts turned white. Move out of direct sun or turn off the flash, "
        "and tap the skin on the screen so the camera sets the brightness for it.",
        "Over-exposed: {value:.1%} of the field has a clipped channel (problem above {limit:.0%}).",
    ),
    "glare": ReasonText(
        "Glare / reflections",
        "There are shiny white reflections. Turn off the flash, and tilt the phone a little so the light "
        "does not reflect straight back; dry the skin if it is wet or has cream on it.",
        "Specular highlights cover {value:.1%} of the field (small, bright, colourless spots; "
        "problem above {limit:.1%}).",
    ),
    "noise": ReasonText(
        "Grainy / noisy",
        "The photo is grainy, which usually means there was too little light. Take it in a brighter place "
        "and do not zoom in digitally.",
        "Luma noise sigma {value:.3f} (0-1 scale, Immerkaer estimate on flat areas; problem above {limit:.3f}).",
    ),
    "compression": ReasonText(
        "Compression artefacts",
        "The photo has lost detail from compression. Send the original photo file instead of a screenshot "
        "or a picture forwarded through a messaging app.",
        "JPEG 8x8 block-grid strength {value:.2f} (edge excess at the grid over the typical step, measured at "
        "full resolution; problem above {limit:.2f}).",
    ),
    "color_cast": ReasonText(
        "Colour cast",
        "The colours look off (too blue, green or yellow). Take the photo in natural daylight without "
        "coloured lamps or filters.",
        "White balance: median skin chroma a*={a:.1f}, b*={b:.1f}; cast index {value:.1f} (chroma outside the "
        "skin-tone locus, or blue/green above red; problem above {limit:.1f}).",
    ),
    "low_resolution": ReasonText(
        "Low resolution",
        "The picture is too small. Send the full-size photo, not a thumbnail or a cropped screenshot.",
        "Image is {width}x{height} px (effective side {value:.0f} px; problem below {limit:.0f} px).",
    ),
    "framing": ReasonText(
        "Framing",
        "Put the spot in the middle of the picture, with some normal skin around it, and move a little "
        "closer so it fills about a third of the photo.",
        "{what}. Lesion estimate: centroid offset {offset:.2f} (0 centre, 1 corner), cut by frame edge "
        "{cut:.2f}, area {area} of the frame.",
    ),
    "not_skin": ReasonText(
        "Not a skin photo",
        "This does not look like a photo of skin. Please take a close photo of the skin area you are worried about.",
        "Only {value:.0%} of the field has skin or lesion colours (needed: {limit:.0%}).",
    ),
}


COLOUR_UNRELIABLE = " Colour-based features are unreliable."
"""Said only when the cast is a problem: at cast index 0 it contradicted its own row."""
NOISE_TIP_WELL_LIT = (
    "The photo is grainy. Move the phone closer instead of zooming in digitally, and send the original photo "
    "rather than an edited or forwarded copy."
)
"""The noise tip for a photo that is not dark: "too little light" would contradict its own exposure score."""


def label(reason_id: str) -> str:
    return REASONS[reason_id].label


def patient_tip(reason_id: str) -> str:
    return REASONS[reason_id].patient_tip


def clinician_detail(reason_id: str, **values: object) -> str:
    """The technical line for a reason; missing template fields are a programming error and raise."""
    return REASONS[reason_id].clinician.format(**values)
