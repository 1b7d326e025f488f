"""What a provider sees during a turn.

One object instead of long argument lists: providers read what they need (image, question, audience, what
earlier steps found) and report progress through ``progress()`` so slow steps stream feedback to the UI.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from PIL import Image

    from dermchat.registry import Registry
    from dermchat.results import Audience, Diagnosis, QualityReport, Triage, TurnResult
    from dermchat.settings import Settings

ProgressFn = Callable[[str, "float | None"], None]

HEATMAP_OPTION = "heatmap"
"""``options={HEATMAP_OPTION: True}`` asks diagnosers for a heat map. Why a request and not a default: Grad-CAM is a
backward pass plus a PNG (~80 ms of a ~270 ms turn on two cores, under the model's lock) that only the clinician
view shows; patient turns and API calls that do not ask for it skip it (issue 23)."""


def heatmap_request(wanted: bool) -> dict[str, Any] | None:
    """``run_turn``'s ``options`` for a turn whose heat map will (or will not) be shown."""
    return {HEATMAP_OPTION: True} if wanted else None


def _no_progress(message: str, fraction: float | None = None) -> None:
    """Default progress sink when nobody is listening (CLI without a UI, tests)."""


@dataclass
class TurnContext:
    """Inputs of one turn plus what earlier steps produced."""

    image: Image.Image | None
    image_sha256: str | None
    question: str
    audience: Audience
    settings: Settings
    registry: Registry
    workdir: Path
    history: list[dict[str, str]] = field(default_factory=list)
    previous: TurnResult | None = None
    quality: QualityReport | None = None
    diagnosis: Diagnosis | None = None
    triage: Triage | None = None
    earlier_image: Image.Image | None = None
    body_site: str | None = None
    age: float | None = None
    sex: str | None = None
    seen_references: set[str] = field(default_factory=set)
    options: dict[str, Any] = field(default_factory=dict)
    progress: ProgressFn = _no_progress

    @property
    def top_conditions(self) -> list[str]:
        """Vocabulary ids of the current differential, most likely first (empty when there is none)."""
        if self.diagnosis is None:
            return []
        return [e.condition_id for e in self.diagnosis.top(len(self.diagnosis.differential))]

    @property
    def wants_heatmap(self) -> bool:
        """Whether the caller will show a heat map (``options[HEATMAP_OPTION]``): draw one only then."""
        return bool(self.options.get(HEATMAP_OPTION))
