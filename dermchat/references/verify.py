"""Whether the image model recognised a generated image as the condition it illustrates (the decision only).

Why: a diffusion model can produce a convincing picture of the wrong thing. SkinGEN-style references are only
useful if they show the condition they are labelled with, so an image is kept only when the classifier puts
the target condition in its prediction set, or in its top three with at least 10%; otherwise the engine hides it
with a note. When the classifier is missing, or the condition is outside its classes, the image is shown as
unverified (``verified=None``) and the reason is recorded, never silently passed.

The engine's references step runs the image model on each generated image (streamed and timed like any step,
``dermchat/steps/references.py``); this module decides what its answer means and records it on the reference.
"""

from __future__ import annotations

import hashlib
import io
from typing import Any

from PIL import Image

from dermchat.providers import Provider
from dermchat.results import Diagnosis, Reference
from dermchat.vocabulary import get_vocabulary

DEFAULT_VERIFIER = "ham-cnn"
TOP_K = 3
MIN_PROBABILITY = 0.10
"""A condition ranked in the top three with less than this is not "recognised": a calibrated 7-class model
spreads a few percent over every class, so third place alone says little (a nevus photo would pass as a
vascular lesion). The classifier's own prediction set always counts."""


def image_sha256(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return hashlib.sha256(buffer.getvalue()).hexdigest()


def why_unchecked(verifier: Provider | None, verifier_id: str, condition_id: str) -> str | None:
    """Why the image model cannot judge an illustration of ``condition_id`` (``None``: it can)."""
    if verifier is None:
        return f"the image model {verifier_id!r} is not installed"
    ok, why = verifier.available()
    if not ok:
        return f"the image model {verifier_id!r} is unavailable ({why})"
    cond = get_vocabulary().get(condition_id)
    if verifier_id == DEFAULT_VERIFIER and cond.ham_code is None:
        return (
            f"{cond.clinician_name} is outside the image model's seven HAM10000 classes, so it cannot judge "
            "an illustration of it"
        )
    return None


def judge(diagnosis: Diagnosis, condition_id: str, verifier_id: str) -> tuple[bool, dict[str, Any]]:
    """``(recognised, details)``: recognised when ``condition_id`` is in the prediction set, or in the top three
    with at least ``MIN_PROBABILITY``."""
    details: dict[str, Any] = {"verifier": verifier_id}
    top = diagnosis.top(TOP_K)
    details["top"] = [{"condition_id": e.condition_id, "probability": round(e.probability, 4)} for e in top]
    if not top:
        details["reason"] = diagnosis.abstain_reason or "the image model gave no differential for this image"
        return False, details
    ranks = [e.condition_id for e in top]
    details["target_rank"] = ranks.index(condition_id) + 1 if condition_id in ranks else None
    likely = {e.condition_id for e in top if e.probability >= MIN_PROBABILITY}
    return condition_id in likely or condition_id in diagnosis.prediction_set, details


def record(ref: Reference, verified: bool | None, details: dict[str, Any]) -> None:
    """Write the verdict on the reference; an unchecked image carries the reason as a notice."""
    ref.verified = verified
    ref.extra["verification"] = details
    if verified is None and details.get("reason"):
        ref.extra["verification_notice"] = (
            f"Some generated illustrations were not checked by the image model: {details['reason']}."
        )
