"""Grounding probe: does the model's answer depend on the photo at all?

A VLM can answer from the question and its priors alone ("a mole? probably a nevus"). Re-asking the same
question with a blank grey image and with pure noise exposes that: if the top condition is unchanged for
both, the answer did not come from the photo and the user is told so. Costs two extra generations, so it
is an opt-in setting (``grounding_probe``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from dermchat.results import Diagnosis

if TYPE_CHECKING:
    from PIL import Image

NOT_GROUNDED_NOTICE = (
    "The model may not be using your image: it gave the same top answer for a blank picture and for random "
    "noise. Rely on this answer even less than usual."
)


def probe_images(size: tuple[int, int], seed: int = 0) -> dict[str, Image.Image]:
    """A uniform mid-grey image and a seeded RGB noise image, the size of the user's photo."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    width, height = size
    noise = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    return {"blank": Image.new("RGB", size, (128, 128, 128)), "noise": Image.fromarray(noise, "RGB")}


def _top(diagnosis: Diagnosis) -> str | None:
    top = diagnosis.top(1)
    return top[0].condition_id if top else None


def apply_grounding_probe(
    diagnosis: Diagnosis,
    image_size: tuple[int, int],
    ask: Callable[[Image.Image], Diagnosis],
) -> Diagnosis:
    """Re-ask with each probe image via ``ask``; flag the diagnosis when the top answer never changes."""
    original = _top(diagnosis)
    out = diagnosis.model_copy(deep=True)
    if original is None:
        out.extra["grounding"] = {"checked": False, "reason": "no structured differential to compare"}
        return out
    tops: dict[str, str | None] = {}
    for name, image in probe_images(image_size).items():
        tops[name] = _top(ask(image))
    unchanged = all(top == original for top in tops.values())
    out.extra["grounding"] = {
        "checked": True,
        "original_top": original,
        "probe_tops": tops,
        "image_used": not unchanged,
    }
    if unchanged:
        out.notices.append(NOT_GROUNDED_NOTICE)
    return out
