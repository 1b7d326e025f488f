"""Real exemplar images of the top differentials, chosen to look like the user's photo (offline default).

Why "closest to the user's photo": SkinGEN's user study found references help most when people can compare
like with like, so exemplars are ranked by lesion and skin colour statistics, skin tone (ITA -> Fitzpatrick-
like type), body site when the user gave one, and lesion size. Images of one lesion are never shown together
and an image already shown in this conversation is never shown again unless ``allow_repeats`` is set.
Files are re-encoded into the turn's work folder (no metadata, no path into the atlas), so a turn's output
stands alone and the atlas location never leaks to the UI.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from dermchat.classifier.patient_info import normalise_site as ham_site
from dermchat.context import TurnContext
from dermchat.paths import default_data_dir
from dermchat.providers import ProviderError, ReferenceGenerator
from dermchat.references.atlas import (
    FEATURE_NAMES,
    THUMB_SIZE,
    Atlas,
    AtlasError,
    check_atlas_dir,
    image_features,
    load_atlas,
    normalise_site,
    site_group,
    thumbnail,
)
from dermchat.references.skintone import FITZPATRICK_TYPES, ita_category, lesion_mask
from dermchat.results import Reference
from dermchat.vocabulary import get_vocabulary

log = logging.getLogger(__name__)

COLOUR_FEATURES = [FEATURE_NAMES.index(n) for n in FEATURE_NAMES if n not in {"ita", "lesion_fraction"}]
SIZE_FEATURE = FEATURE_NAMES.index("lesion_fraction")
ITA_FEATURE = FEATURE_NAMES.index("ita")
SAME_PICTURE_MAD = 3.0  # mean absolute thumbnail difference (0-255) below which two photos are the same picture
WHOLE_IMAGE_STATS = [FEATURE_NAMES.index(n) for n in ("L_std", "a_std", "b_std")]
SAME_PICTURE_STATS = 1.5  # whole-image Lab spread closer than this: worth decoding the file to compare


class ExemplarOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    atlas_dir: str | None = Field(None, description="atlas folder; default: DERMCHAT_DATA_DIR or ../shared/data/ham10000")
    k: int | None = Field(None, ge=1, le=8, description="exemplars per condition; None: settings.references_per_condition (2)")
    allow_repeats: bool = Field(False, description="allow images already shown in this conversation")
    tone_weight: float = Field(1.0, ge=0, description="distance per Fitzpatrick-like type of difference")
    site_weight: float = Field(2.0, ge=0, description="distance for a different body region (half for a near one)")
    size_weight: float = Field(1.0, ge=0, description="weight of the lesion-size difference (standardised)")
    max_side: int = Field(512, ge=64, le=2048, description="longest side of the copied image in pixels")


def user_features(image: Image.Image, body_site: str | None) -> tuple[np.ndarray, int, np.ndarray]:
    """Feature vector, Fitzpatrick-like index (1-6) and thumbnail of the user's photo."""
    thumb = np.asarray(image.convert("RGB").resize(THUMB_SIZE, Image.Resampling.BILINEAR))
    features = image_features(thumb, lesion_mask(thumb))
    fitz = FITZPATRICK_TYPES.index(ita_category(float(features[ITA_FEATURE]))[1]) + 1
    return features, fitz, thumb


def rank_candidates(
    atlas: Atlas,
    rows: np.ndarray,
    features: np.ndarray,
    fitzpatrick: int,
    body_site: str | None,
    options: ExemplarOptions,
) -> tuple[np.ndarray, np.ndarray]:
    """Rows sorted by distance to the user's photo (ascending) and their distances.

    Colour and size are standardised by the atlas-wide spread so no single Lab channel dominates; tone and
    site are additive penalties whose weights are options.
    """
    spread = atlas.spread
    cand = atlas.features[rows]
    colour = np.sqrt((((cand[:, COLOUR_FEATURES] - features[COLOUR_FEATURES]) / spread[COLOUR_FEATURES]) ** 2).mean(axis=1))
    size = np.abs(cand[:, SIZE_FEATURE] - features[SIZE_FEATURE]) / spread[SIZE_FEATURE]
    tone = np.abs(atlas.fitzpatrick[rows].astype(np.float32) - fitzpatrick)
    distance = colour + options.size_weight * size + options.tone_weight * tone
    site = normalise_site(body_site)
    if site:
        group = site_group(site)
        sites, groups = atlas.site_array[rows], atlas.group_array[rows]
        # Everyday words ('left forearm') also match the HAM site they name ('upper extremity') exactly,
        # as the classifier reads them; an atlas with its own site names still matches them verbatim.
        exact = (sites == site) | (sites == (ham_site(body_site) or site))
        penalty = np.where(
            exact, 0.0, np.where((groups == group) & bool(group), 0.5, np.where(sites == "", 0.75, 1.0))
        ).astype(np.float32)
        distance = distance + options.site_weight * penalty
    order = np.argsort(distance, kind="stable")
    return rows[order], distance[order]


class ExemplarProvider(ReferenceGenerator):
    """``ham-exemplars``: real images from an atlas folder (HAM10000 by default)."""

    id = "ham-exemplars"
    label = "Real exemplar images"
    version = "1"
    synthetic = False
    description = "Real images of the top conditions from an image atlas, matched to the photo's colours, skin tone and site."
    Options = ExemplarOptions

    def __init__(self) -> None:
        super().__init__()
        self.atlas: Atlas | None = None

    @property
    def opts(self) -> ExemplarOptions:
        assert isinstance(self.options, ExemplarOptions)
        return self.options

    def atlas_dir(self) -> Path:
        return Path(self.opts.atlas_dir).expanduser() if self.opts.atlas_dir else default_data_dir()

    def available(self) -> tuple[bool, str]:
        problem = check_atlas_dir(self.atlas_dir())
        if problem:
            return False, (
                f"{problem}: set DERMCHAT_DATA_DIR or options.ham-exemplars.atlas_dir to a folder with images/ "
                "and metadata.csv"
            )
        return True, ""

    def _load(self) -> None:
        """Read the atlas; the first use builds its feature cache (about a minute for 8.5k images on 2 cores)."""

        def progress(done: int, total: int) -> None:
            self.report_load(f"Indexing the reference atlas (first use): {done}/{total} images", done / max(total, 1))
            if done == total or done % max(1, total // 10) < max(1, total // 100):
                log.info("atlas features: %d/%d images", done, total)

        try:
            self.atlas = load_atlas(self.atlas_dir(), progress=progress)
        except AtlasError as exc:
            raise ProviderError(str(exc)) from exc

    # -- the turn ----------------------------------------------------------------------------------------------
    def references(self, ctx: TurnContext) -> list[Reference]:
        self.load()
        atlas = self.atlas
        assert atlas is not None
        if ctx.image is None or ctx.diagnosis is None:
            return []
        k = self.opts.k if self.opts.k is not None else ctx.settings.references_per_condition
        conditions = ctx.top_conditions[: ctx.settings.reference_conditions]
        features, fitz, thumb = user_features(ctx.image, ctx.body_site)
        seen = set() if self.opts.allow_repeats else set(ctx.seen_references)
        out: list[Reference] = []
        for position, condition_id in enumerate(conditions):
            rows = atlas.rows_for(condition_id)
            if not len(rows):
                log.info("atlas %s has no images of %s", atlas.root, condition_id)
                continue
            ranked, distances = rank_candidates(atlas, rows, features, fitz, ctx.body_site, self.opts)
            picked = self._pick(atlas, ranked, distances, k, seen, thumb, features)
            for rank, (row, distance) in enumerate(picked):
                seen.add(atlas.image_ids[row])
                out.append(self._reference(ctx, atlas, row, float(distance), rank, condition_id, fitz))
            ctx.progress(f"Reference images: {len(out)} found", (position + 1) / max(1, len(conditions)))
        return out

    def _pick(
        self, atlas: Atlas, ranked: np.ndarray, distances: np.ndarray, k: int, seen: set[str], thumb: np.ndarray,
        features: np.ndarray,
    ) -> list[tuple[int, float]]:
        """The first k rows not seen before, one per lesion, and never the user's own picture."""
        picked: list[tuple[int, float]] = []
        lesions: set[str] = set()
        for row, distance in zip(ranked.tolist(), distances.tolist()):
            if atlas.image_ids[row] in seen or atlas.lesion_ids[row] in lesions:
                continue
            stats_close = np.abs(atlas.features[row, WHOLE_IMAGE_STATS] - features[WHOLE_IMAGE_STATS]).max()
            if stats_close < SAME_PICTURE_STATS and self._same_picture(atlas, row, thumb):
                continue
            picked.append((row, distance))
            lesions.add(atlas.lesion_ids[row])
            if len(picked) == k:
                break
        return picked

    @staticmethod
    def _same_picture(atlas: Atlas, row: int, thumb: np.ndarray) -> bool:
        """A user who uploads an atlas image must not get it back as 'another example'."""
        other = thumbnail(atlas.image_path(row))
        return float(np.abs(other.astype(np.int16) - thumb.astype(np.int16)).mean()) < SAME_PICTURE_MAD

    def _reference(
        self, ctx: TurnContext, atlas: Atlas, row: int, distance: float, rank: int, condition_id: str, user_fitz: int
    ) -> Reference:
        image_id = atlas.image_ids[row]
        target_dir = ctx.workdir / "references"
        target_dir.mkdir(parents=True, exist_ok=True)
        target = target_dir / f"exemplar_{condition_id}_{image_id}.jpg"
        with Image.open(atlas.image_path(row)) as src:
            img = src.convert("RGB")  # drops EXIF and any other metadata
        img.thumbnail((self.opts.max_side, self.opts.max_side), Image.Resampling.LANCZOS)
        img.save(target, format="JPEG", quality=92)
        info = atlas.info
        name = get_vocabulary().get(condition_id).name(ctx.audience)
        fitz = FITZPATRICK_TYPES[int(atlas.fitzpatrick[row]) - 1]
        return Reference(
            path=str(target),
            condition_id=condition_id,
            caption=f"{name} — real image ({info.name}, {info.license})",
            provenance=f"{info.name} image {image_id}",
            synthetic=False,
            provider_id=self.id,
            license=info.license,
            attribution=info.attribution,
            verified=None,
            extra={
                "image_id": image_id,
                "dataset": info.name,
                "dataset_url": info.url,
                "kind": "real",
                "rank": rank,
                "distance": round(distance, 4),
                "body_site": atlas.sites[row] or None,
                "skin_type": fitz,
                "skin_type_source": "metadata" if bool(atlas.tone_from_metadata[row]) else "estimated (ITA)",
                "user_skin_type": FITZPATRICK_TYPES[user_fitz - 1],
                "lesion_fraction": round(float(atlas.features[row, SIZE_FEATURE]), 3),
            },
        )
