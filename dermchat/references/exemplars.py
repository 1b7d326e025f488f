"""Ranking real exemplar images by how much they look like the user's photo (the ``ham-exemplars`` provider's
library; the provider itself is in ``plugins/exemplars.py``).

Why "closest to the user's photo": SkinGEN's user study found references help most when people can compare
like with like, so exemplars are ranked by lesion and skin colour statistics, skin tone (ITA -> Fitzpatrick-
like type), body site when the user gave one, and lesion size.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from dermchat.classifier.patient_info import normalise_site as ham_site
from dermchat.references.atlas import FEATURE_NAMES, THUMB_SIZE, Atlas, image_features, normalise_site, site_group
from dermchat.references.skintone import FITZPATRICK_TYPES, ita_category, lesion_mask

COLOUR_FEATURES = [FEATURE_NAMES.index(n) for n in FEATURE_NAMES if n not in {"ita", "lesion_fraction"}]
SIZE_FEATURE = FEATURE_NAMES.index("lesion_fraction")
ITA_FEATURE = FEATURE_NAMES.index("ita")
SAME_PICTURE_MAD = 3.0  # mean absolute thumbnail difference (0-255) below which two photos are the same picture
WHOLE_IMAGE_STATS = [FEATURE_NAMES.index(n) for n in ("L_std", "a_std", "b_std")]
SAME_PICTURE_STATS = 1.5  # whole-image Lab spread closer than this: worth decoding the file to compare


class ExemplarOptions(BaseModel):
    """The ``ham-exemplars`` options (``settings.options["ham-exemplars"]``), ranking weights included."""

    model_config = ConfigDict(extra="forbid")

    atlas_dir: str | None = Field(
        None, description="atlas folder; default: DERMCHAT_DATA_DIR or ../shared/data/ham10000"
    )
    k: int | None = Field(
        None, ge=1, le=8, description="exemplars per condition; None: settings.references_per_condition (2)"
    )
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
    colour = np.sqrt(
        (((cand[:, COLOUR_FEATURES] - features[COLOUR_FEATURES]) / spread[COLOUR_FEATURES]) ** 2).mean(axis=1)
    )
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
