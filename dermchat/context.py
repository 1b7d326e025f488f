"""What a provider sees during a turn.

One object instead of long argument lists: the turn's request (question, patient details, conversation), the
decoded photos, and what earlier steps found. Step outputs are read from the result being built (``result``),
so there is one store of quality, diagnosis and triage, never a second copy to keep in step. Providers report
progress through ``progress()`` so slow steps stream feedback to the UI.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dermchat.request import TurnRequest
from dermchat.results import Audience, Diagnosis, QualityReport, Triage, TurnResult

if TYPE_CHECKING:
    from PIL import Image

    from dermchat.settings import Settings

ProgressFn = Callable[[str, "float | None"], None]

HEATMAP_OPTION = "heatmap"
"""``options={HEATMAP_OPTION: True}`` asks diagnosers for a heat map. Why a request and not a default: Grad-CAM is a
backward pass plus a PNG (~80 ms of a ~270 ms turn on two cores, under the model's lock) that only the clinician
view shows; patient turns and API calls that do not ask for it skip it (issue 23)."""


def heatmap_request(wanted: bool) -> dict[str, Any]:
    """A ``TurnRequest``'s ``options`` for a turn whose heat map will (or will not) be shown."""
    return {HEATMAP_OPTION: True} if wanted else {}


def _no_progress(message: str, fraction: float | None = None) -> None:
    """Default progress sink when nobody is listening (CLI without a UI, tests)."""


def _unnamed_result() -> TurnResult:
    """The result a context outside a turn reads from (benchmarks, tests, probes): nothing found yet."""
    return TurnResult(turn_id="outside-a-turn")


@dataclass
class TurnContext:
    """The request of one turn, its decoded photos, and (through ``result``) what earlier steps produced."""

    settings: Settings
    workdir: Path
    request: TurnRequest = field(default_factory=TurnRequest)
    result: TurnResult = field(default_factory=_unnamed_result)
    image: Image.Image | None = None
    earlier_image: Image.Image | None = None
    progress: ProgressFn = _no_progress

    # -- the request -------------------------------------------------------------------------------------------
    @property
    def question(self) -> str:
        return self.request.question

    @property
    def audience(self) -> Audience:
        """The audience the turn answers for (the request's, or the settings' default: the result holds it)."""
        return self.result.audience

    @property
    def history(self) -> list[dict[str, str]]:
        return self.request.history

    @property
    def previous(self) -> TurnResult | None:
        return self.request.previous

    @property
    def body_site(self) -> str | None:
        return self.request.patient.body_site

    @property
    def age(self) -> float | None:
        return self.request.patient.age

    @property
    def sex(self) -> str | None:
        return self.request.patient.sex

    @property
    def seen_references(self) -> set[str]:
        return self.request.seen_references

    @property
    def options(self) -> dict[str, Any]:
        return self.request.options

    # -- what earlier steps found (one store: the result being built) -----------------------------------------
    @property
    def image_sha256(self) -> str | None:
        return self.result.image_sha256

    @property
    def quality(self) -> QualityReport | None:
        return self.result.quality

    @property
    def diagnosis(self) -> Diagnosis | None:
        return self.result.diagnosis

    @property
    def triage(self) -> Triage | None:
        return self.result.triage

    @property
    def morphology(self) -> dict[str, Any] | None:
        """The morphology step's descriptors (``Morphology.as_dict()``): the explanation cites ABCDE from them."""
        report = self.result.morphology
        return report.descriptors if report is not None else None

    @property
    def red_flag_conditions(self) -> list[str]:
        """Knowledge-base conditions whose warning signs the user described, most urgent first, each once."""
        return list(dict.fromkeys(hit.source for hit in self.result.red_flags))

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
