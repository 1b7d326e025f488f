"""The structured, JSON-serialisable result of one chat turn, and the step events that stream it.

One ``TurnResult`` per turn is rendered two ways (patient and clinician) and logged as-is by study mode,
so every field here is plain data: no images in memory, no model objects.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, PrivateAttr

Audience = Literal["patient", "clinician"]
TriageTier = Literal["reassure", "routine", "cant_assess", "urgent"]
"""``cant_assess``: the image model could not read this photo (it abstained). Not a verdict on the skin: it ranks
with "urgent", because a photo that can't be read can't rule anything out, so it is never calmer than any answer
the photo could have given (a darkened melanoma must not read calmer than the original). Its advice is to show
the spot to a doctor or retake the photo (``render.TRIAGE_NEXT_STEP``)."""
QualityBand = Literal["poor", "fair", "good", "excellent"]
TurnStatus = Literal[
    "ok",  # full answer
    "retake",  # quality gate stopped the turn and asked for a better photo
    "not_skin",  # the photo does not show skin; no diagnosis attempted
    "abstained",  # the diagnoser declined (out of its depth); conditions to consider may follow
    "no_image",  # text-only turn with nothing to talk about yet: intake questions / conditions to consider
    "followup",  # a text question about the previous result
    "diagnosis_failed",  # the diagnoser crashed: polite end of turn
    "invalid_input",  # unreadable upload or empty message
]
StepName = Literal["intake", "quality", "diagnosis", "morphology", "explanation", "references", "turn"]

TRIAGE_ORDER: dict[str, int] = {"reassure": 0, "routine": 1, "cant_assess": 2, "urgent": 2}


class QualityReason(BaseModel):
    """One aspect of photo quality with its own score and a tip per audience."""

    id: str
    label: str
    score: float = Field(ge=0, le=100, description="100 = no problem with this aspect")
    problem: bool
    value: float | None = None
    patient_tip: str = ""
    clinician_detail: str = ""


class QualityReport(BaseModel):
    provider_id: str
    score: float = Field(ge=0, le=100)
    acceptable: bool
    threshold: float
    band: QualityBand
    reasons: list[QualityReason] = Field(default_factory=list)
    brisque: float | None = None
    is_skin: bool = True
    skin_fraction: float = 0.0
    lesion_fraction: float | None = None
    lesion_bbox: tuple[float, float, float, float] | None = None
    discount: float = Field(1.0, ge=0, le=1, description="multiplier on diagnosis confidence if the user continues")
    analysed_size: tuple[int, int] | None = None
    notes: list[str] = Field(default_factory=list)
    dermoscopic: bool | None = Field(
        None,
        description="whether the photo looks like a dermoscope close-up (None = not judged); a dermoscopy-only "
        "diagnoser abstains on False",
    )
    dermoscopy_score: float | None = Field(None, ge=0, le=1, description="0 ordinary photo .. 1 dermoscopic")
    dermoscopy_detail: str = Field("", description="the cues behind the dermoscopy judgement, for clinicians")

    def problems(self, n: int | None = None) -> list[QualityReason]:
        """The reasons flagged as problems, worst first."""
        bad = sorted((r for r in self.reasons if r.problem), key=lambda r: r.score)
        return bad if n is None else bad[:n]


class DifferentialEntry(BaseModel):
    condition_id: str
    probability: float = Field(ge=0, le=1)
    label: str | None = Field(None, description="the provider's own label before mapping, for audit")


class Diagnosis(BaseModel):
    """What a diagnoser returns. Probabilities are over vocabulary ids and sum to 1 (or the list is empty)."""

    provider_id: str
    provider_version: str = ""
    differential: list[DifferentialEntry] = Field(default_factory=list)
    prediction_set: list[str] = Field(default_factory=list)
    coverage: float | None = None
    abstained: bool = False
    abstain_reason: str | None = None
    triage_hint: TriageTier | None = None
    triage_reason: str | None = None
    rationale: str = ""
    rationale_audience: Audience | None = Field(
        None, description="who the rationale was written for; None = technical text for the clinician view only"
    )
    morphology: dict[str, str] = Field(default_factory=dict)
    heatmap_path: str | None = None
    ood_score: float | None = None
    notices: list[str] = Field(default_factory=list)
    extra: dict[str, Any] = Field(default_factory=dict)

    def top(self, n: int = 3) -> list[DifferentialEntry]:
        return sorted(self.differential, key=lambda e: e.probability, reverse=True)[:n]


class MorphologyReport(BaseModel):
    """What the photo shows (dermoscopic ABCD descriptors), checked against the diagnosis, maybe vs an earlier photo.

    ``descriptors`` is ``dermchat.morphology.Morphology.as_dict()``; ``consistency`` and ``comparison`` are the
    ``as_dict()`` of the consistency check and of the comparison with an earlier photo (None when not run).
    """

    provider_id: str
    descriptors: dict[str, Any] = Field(default_factory=dict)
    consistency: dict[str, Any] | None = None
    comparison: dict[str, Any] | None = None

    @property
    def disagrees(self) -> bool:
        """The descriptors are high-risk while the image model's top condition is benign."""
        return bool(self.consistency and self.consistency.get("disagrees"))


class Triage(BaseModel):
    tier: TriageTier
    reason: str
    drivers: list[str] = Field(
        default_factory=list, description="condition ids that made the tier urgent (explained to the user first)"
    )
    same_day: bool = Field(False, description="a warning sign the user described needs help today, not in weeks")
    pathway: str | None = Field(None, description="the guidance pathway behind the tier (triage_pathways.yaml)")
    advice: str | None = Field(None, description="why this tier, in plain words for patients")
    sources: list[str] = Field(default_factory=list, description="URLs of the guidance behind the tier")


class RedFlagHit(BaseModel):
    """A warning sign found in the user's own words (``dermchat.redflags``)."""

    id: str
    urgency: Literal["soon", "now"]
    what: str = Field(description="plain words for the notice, e.g. 'a mole or spot that bleeds'")
    source: str = Field(description="knowledge-base condition whose red-flags section states this sign")
    matched: str = Field(description="the user's words that matched (after spelling fixes)")


class Citation(BaseModel):
    marker: str = Field(description="what appears in the text, e.g. '[1]'")
    source_id: str
    title: str
    url: str
    condition_id: str | None = None
    section: str | None = None


class ConditionToConsider(BaseModel):
    """A condition retrieved from what the user said: a list to discuss with a clinician, not a probability."""

    condition_id: str
    why: str = ""
    red_flags: list[str] = Field(default_factory=list)


class Explanation(BaseModel):
    provider_id: str
    lead: str = Field(
        "",
        description="a follow-up's answer from the turn's own result (tier, likely conditions), "
        "shown before the cited text; not from the sources, so not cited",
    )
    text: str
    citations: list[Citation] = Field(default_factory=list)
    conditions_to_consider: list[ConditionToConsider] = Field(default_factory=list)
    intake_questions: list[str] = Field(default_factory=list)
    grounded: bool = True
    notices: list[str] = Field(default_factory=list)
    asked_about: list[str] = Field(
        default_factory=list,
        description="condition ids the user's question names; the answer then says what the image model "
        "estimated for each of them (or that it does not assess it)",
    )
    extra: dict[str, Any] = Field(default_factory=dict)


class Reference(BaseModel):
    """One reference image. ``synthetic`` is never optional: generated images are always labelled."""

    path: str
    condition_id: str
    caption: str
    provenance: str = Field(description="dataset + id, or model + prompt + seed")
    synthetic: bool
    provider_id: str
    license: str | None = None
    attribution: str | None = None
    verified: bool | None = Field(None, description="synthetic only: the classifier recognised the target class")
    extra: dict[str, Any] = Field(default_factory=dict)
    _to_check: tuple[Any, str] | None = PrivateAttr(default=None)

    def await_check(self, image: Any, verifier_id: str) -> None:
        """Ask the engine to have ``verifier_id`` judge this generated image (the clean one: the visible band is
        for people) before it is shown; held in memory only, never serialised."""
        self._to_check = (image, verifier_id)

    def take_check(self) -> tuple[Any, str] | None:
        """The image and image model a pending check needs (``None`` when there is none); the check is taken."""
        pending, self._to_check = self._to_check, None
        return pending


class StepError(BaseModel):
    step: str
    provider_id: str | None = None
    message: str


class ProviderRef(BaseModel):
    id: str
    version: str = ""


class TurnResult(BaseModel):
    """Everything one turn produced; rendered for patients and clinicians, logged by study mode."""

    turn_id: str
    created_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    status: TurnStatus = "ok"
    audience: Audience = "patient"
    question: str = ""
    image_sha256: str | None = None
    image_size: tuple[int, int] | None = None
    quality: QualityReport | None = None
    quality_overridden: bool = False
    diagnosis: Diagnosis | None = None
    second_opinion: Diagnosis | None = None
    morphology: MorphologyReport | None = None
    triage: Triage | None = None
    explanation: Explanation | None = None
    references: list[Reference] = Field(default_factory=list)
    hidden_references: list[Reference] = Field(default_factory=list)
    notices: list[str] = Field(default_factory=list)
    red_flags: list[RedFlagHit] = Field(default_factory=list, description="warning signs in the user's message")
    language: str | None = Field(None, description="language of the user's message when it is not English")
    message: str = Field("", description="a short plain-language status line for the chat")
    errors: list[StepError] = Field(default_factory=list)
    timings_ms: dict[str, float] = Field(default_factory=dict)
    providers: dict[str, ProviderRef | list[ProviderRef]] = Field(default_factory=dict)
    settings_profile: str | None = None

    @property
    def differential(self) -> list[DifferentialEntry]:
        return self.diagnosis.differential if self.diagnosis else []

    @property
    def prediction_set(self) -> list[str]:
        return self.diagnosis.prediction_set if self.diagnosis else []


class StepEvent(BaseModel):
    """What ``run_turn`` yields while it works. The last event of a turn has ``kind='result'``."""

    step: StepName
    kind: Literal["start", "progress", "done", "skipped", "error", "result"]
    message: str = ""
    fraction: float | None = None
    provider_id: str | None = None
    elapsed_ms: float | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    result: TurnResult | None = None
