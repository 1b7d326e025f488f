"""The contrast view: the top differentials side by side, each with its references and distinguishing features.

Why a data model and no rendering: the Gradio chat (lead), the study pages and ``dermchat turn --out`` all show
the same gallery; they get plain pydantic data (JSON-able) and draw it their own way. Real and synthetic
images are marked on every item, unverified illustrations are flagged, and hidden ones are only counted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from dermchat.references.kb import how_it_looks, section_sources
from dermchat.results import Audience, Reference, TurnResult
from dermchat.vocabulary import get_vocabulary

MAX_FEATURES = 3
REAL_BADGE = "Real image"
SYNTHETIC_BADGE = "Synthetic illustration"


class GalleryItem(BaseModel):
    path: str
    caption: str
    kind: Literal["real", "synthetic"]
    badge: str
    verified: bool | None = None
    verification_note: str | None = None
    provenance: str
    license: str | None = None
    attribution: str | None = None
    provider_id: str
    image_id: str | None = None


class GallerySource(BaseModel):
    title: str
    url: str


class GalleryColumn(BaseModel):
    condition_id: str
    name: str
    probability: float | None = None
    in_prediction_set: bool = False
    malignant: bool = False
    features: list[str] = Field(default_factory=list, description="how it looks, from the knowledge base")
    sources: list[GallerySource] = Field(default_factory=list)
    items: list[GalleryItem] = Field(default_factory=list)
    hidden: int = Field(0, description="generated images hidden because the image model did not recognise them")


class Gallery(BaseModel):
    audience: Audience
    columns: list[GalleryColumn] = Field(default_factory=list)
    legend: str = (
        f"{REAL_BADGE}: a photo from a public dataset. {SYNTHETIC_BADGE}: made by an AI model — "
        "an illustration, not your photo or diagnosis."
    )
    notes: list[str] = Field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not any(col.items for col in self.columns)


def gallery_item(ref: Reference) -> GalleryItem:
    """One reference as the UI shows it; the badge comes from ``synthetic``, never from the provider's id."""
    note = None
    if ref.synthetic and ref.verified is None:
        note = str(ref.extra.get("verification_notice") or "not checked by the image model")
    return GalleryItem(
        path=ref.path,
        caption=ref.caption,
        kind="synthetic" if ref.synthetic else "real",
        badge=SYNTHETIC_BADGE if ref.synthetic else REAL_BADGE,
        verified=ref.verified,
        verification_note=note,
        provenance=ref.provenance,
        license=ref.license,
        attribution=ref.attribution,
        provider_id=ref.provider_id,
        image_id=ref.extra.get("image_id"),
    )


def build_gallery(
    result: TurnResult, audience: Audience | None = None, n: int = 3, kb_dir: Path | None = None
) -> Gallery:
    """Columns for the top ``n`` differentials (most likely first), references grouped under each."""
    audience = audience or result.audience
    vocab = get_vocabulary()
    gallery = Gallery(audience=audience)
    diagnosis = result.diagnosis
    if diagnosis is None or diagnosis.abstained:
        return gallery
    for entry in diagnosis.top(n):
        cond = vocab.get(entry.condition_id)
        column = GalleryColumn(
            condition_id=cond.id,
            name=cond.name(audience),
            probability=round(entry.probability, 4),
            in_prediction_set=cond.id in diagnosis.prediction_set,
            malignant=cond.malignant,
            features=how_it_looks(cond.id, audience, kb_dir)[:MAX_FEATURES],
            sources=[GallerySource(title=s["title"], url=s["url"]) for s in section_sources(cond.id, audience, kb_dir)],
            items=[gallery_item(r) for r in result.references if r.condition_id == cond.id],
            hidden=sum(1 for r in result.hidden_references if r.condition_id == cond.id),
        )
        # Real images first: they are the evidence; illustrations come after them.
        column.items.sort(key=lambda item: item.kind != "real")
        gallery.columns.append(column)
    if result.hidden_references:
        gallery.notes.append(
            f"{len(result.hidden_references)} generated image(s) were hidden because the image model did not "
            "recognise them as the intended condition."
        )
    if any(item.kind == "synthetic" for col in gallery.columns for item in col.items):
        gallery.notes.append("Synthetic illustrations are not photos of you and are not a diagnosis.")
    return gallery
