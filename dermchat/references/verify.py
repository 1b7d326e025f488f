"""Check a generated image with the project's diagnosis model before it is shown.

Why: a diffusion model can produce a convincing picture of the wrong thing. SkinGEN-style references are only
useful if they show the condition they are labelled with, so an image is kept only when the classifier puts
the target condition in its prediction set, or in its top three with at least 10%; otherwise the engine hides it with a note. When the classifier is
missing, or the condition is outside its classes, the image is shown as unverified (``verified=None``) and
the reason is recorded, never silently passed.
"""

from __future__ import annotations

import hashlib
import io
import logging
from typing import Any

from PIL import Image

from dermchat.context import TurnContext
from dermchat.request import TurnRequest
from dermchat.results import TurnResult
from dermchat.vocabulary import get_vocabulary

log = logging.getLogger(__name__)

DEFAULT_VERIFIER = "ham-cnn"
TOP_K = 3
MIN_PROBABILITY = 0.10
"""A condition ranked in the top three with less than this is not "recognised": a calibrated 7-class model
spreads a few percent over every class, so third place alone says little (a nevus photo would pass as a
vascular lesion). The classifier's own prediction set always counts."""


def _silent(message: str, fraction: float | None = None) -> None:
    """The verifier's own progress is not the user's: generation progress is what they are waiting for."""


def image_sha256(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return hashlib.sha256(buffer.getvalue()).hexdigest()


def verify_image(
    ctx: TurnContext, image: Image.Image, condition_id: str, verifier_id: str = DEFAULT_VERIFIER
) -> tuple[bool | None, dict[str, Any]]:
    """``(verified, details)``: True if ``condition_id`` is in the verifier's top three, False if not, None if
    the image could not be checked (details['reason'] says why)."""
    cond = get_vocabulary().get(condition_id)
    details: dict[str, Any] = {"verifier": verifier_id}
    try:
        if ctx.registry is None:
            raise KeyError(verifier_id)
        provider = ctx.registry.get("diagnoser", verifier_id)
    except KeyError:
        details["reason"] = f"the image model {verifier_id!r} is not installed"
        return None, details
    ok, why = provider.available()
    if not ok:
        details["reason"] = f"the image model {verifier_id!r} is unavailable ({why})"
        return None, details
    if verifier_id == DEFAULT_VERIFIER and cond.ham_code is None:
        details["reason"] = (
            f"{cond.clinician_name} is outside the image model's seven HAM10000 classes, so it cannot judge "
            "an illustration of it"
        )
        return None, details
    provider.load()
    # The generated image as a turn of its own: the same person's details, none of the user's photo's findings.
    probe = TurnContext(
        settings=ctx.settings, workdir=ctx.workdir, registry=ctx.registry, image=image, progress=_silent,
        request=TurnRequest(patient=ctx.request.patient, options=ctx.options),
        result=TurnResult(turn_id=ctx.result.turn_id, audience=ctx.audience, image_sha256=image_sha256(image)),
    )
    diagnosis = provider.diagnose(probe)  # type: ignore[attr-defined]
    top = diagnosis.top(TOP_K)
    details["top"] = [{"condition_id": e.condition_id, "probability": round(e.probability, 4)} for e in top]
    if not top:
        details["reason"] = diagnosis.abstain_reason or "the image model gave no differential for this image"
        return False, details
    ranks = [e.condition_id for e in top]
    details["target_rank"] = ranks.index(condition_id) + 1 if condition_id in ranks else None
    likely = {e.condition_id for e in top if e.probability >= MIN_PROBABILITY}
    return condition_id in likely or condition_id in diagnosis.prediction_set, details
