"""Before any model runs: wait for a warm-up in progress, decode the photos."""

from __future__ import annotations

import time
from collections.abc import Iterator

from dermchat.capabilities import STEP_TITLES
from dermchat.intake import ImageInputError, ImageSource, decode_image
from dermchat.results import StepEvent
from dermchat.steps.turn import Turn


def wait_for_models(turn: Turn) -> Iterator[StepEvent]:
    """A turn that arrives while the app is still loading its models waits for them, as a visible step."""
    app = turn.app
    if app.ready:
        return
    yield StepEvent(step="turn", kind="start", message=STEP_TITLES["turn"])
    start = time.perf_counter()
    while not app.wait_until_ready(timeout=1.0):
        yield StepEvent(step="turn", kind="progress", message=f"Loading {app.loading or 'the models'}…")
    yield StepEvent(
        step="turn", kind="done", message="Models loaded", elapsed_ms=round((time.perf_counter() - start) * 1000, 1)
    )


def read_photo(turn: Turn, image: ImageSource) -> bool:
    """Decode the photo (metadata dropped, size capped); an unreadable one ends the turn with the reason."""
    try:
        decoded = decode_image(
            image, max_bytes=turn.settings.max_upload_bytes, max_pixels=turn.settings.max_image_pixels
        )
    except ImageInputError as exc:
        turn.result.status = "invalid_input"
        turn.result.message = str(exc)
        return False
    turn.ctx.image = decoded.image
    turn.result.image_sha256 = decoded.sha256
    turn.result.image_size = decoded.image.size
    turn.result.notices.extend(decoded.notes)
    return True


def read_earlier_photo(turn: Turn, image: ImageSource) -> None:
    """Decode the earlier photo the same way (metadata dropped); an unreadable one is named, not fatal."""
    try:
        decoded = decode_image(
            image, max_bytes=turn.settings.max_upload_bytes, max_pixels=turn.settings.max_image_pixels
        )
    except ImageInputError as exc:
        turn.result.notices.append(f"The earlier photo could not be used for a comparison: {exc}")
        return
    turn.ctx.earlier_image = decoded.image
