"""Built-in plugin: real exemplar reference images (``ham-exemplars``), their gaps and retrieval benchmark.

Real images of the top differentials, chosen to look like the user's photo (the offline default); the ranking
is in :mod:`dermchat.references.exemplars`, the atlas in :mod:`dermchat.references.atlas`. Images of one lesion
are never shown together and an image already shown in this conversation is never shown again unless
``allow_repeats`` is set. Files are re-encoded into the turn's work folder (no metadata, no path into the
atlas), so a turn's output stands alone and the atlas location never leaks to the UI.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from dermchat.context import TurnContext
from dermchat.hookspecs import BenchFn, hookimpl
from dermchat.paths import default_data_dir
from dermchat.providers import ProviderError, ReferenceGenerator
from dermchat.references.atlas import Atlas, AtlasError, check_atlas_dir, load_atlas, thumbnail
from dermchat.references.exemplars import (
    SAME_PICTURE_MAD,
    SAME_PICTURE_STATS,
    SIZE_FEATURE,
    WHOLE_IMAGE_STATS,
    ExemplarOptions,
    rank_candidates,
    user_features,
)
from dermchat.references.skintone import FITZPATRICK_TYPES
from dermchat.results import Reference
from dermchat.vocabulary import get_vocabulary

if TYPE_CHECKING:
    from dermchat.results import TurnResult

log = logging.getLogger(__name__)


class ExemplarProvider(ReferenceGenerator):
    """``ham-exemplars``: real images from an atlas folder (HAM10000 by default)."""

    id = "ham-exemplars"
    label = "Real exemplar images"
    version = "1"
    synthetic = False
    description = (
        "Real images of the top conditions from an image atlas, matched to the photo's colours, skin tone and site."
    )
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
        self,
        atlas: Atlas,
        ranked: np.ndarray,
        distances: np.ndarray,
        k: int,
        seen: set[str],
        thumb: np.ndarray,
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


NOTICE_CONDITIONS = 3  # the differential's top entries a patient is shown references for (settings default)

# Providers handed to registries, so a notice can ask the atlas that was really searched what it covers.
_REGISTERED: weakref.WeakSet[ExemplarProvider] = weakref.WeakSet()


@hookimpl
def register_reference_generators(register: Callable[[ExemplarProvider], None]) -> None:
    provider = ExemplarProvider()
    _REGISTERED.add(provider)
    register(provider)


def missing_exemplar_notice(result: TurnResult, covered: set[str], audience: str) -> str | None:
    """Name the likely conditions the atlas has no real photos of, so a missing picture is not a silent gap.

    The default atlas (HAM10000) holds seven pigmented-lesion types; a diagnoser with a wider vocabulary (a
    VLM) can rank eczema or psoriasis first, and the patient would otherwise see pictures of the other
    conditions only, with no word on why the most likely one has none.
    """
    if result.diagnosis is None or result.diagnosis.abstained:
        return None
    shown = {ref.condition_id for ref in result.references}
    missing = [
        entry.condition_id
        for entry in result.diagnosis.top(NOTICE_CONDITIONS)
        if entry.condition_id not in covered and entry.condition_id not in shown
    ]
    if not missing:
        return None
    from dermchat.vocabulary import get_vocabulary

    vocab = get_vocabulary()
    names = [vocab.get(c).name(audience) if c in vocab else c for c in missing]
    return (
        f"No real example photos of {', '.join(names)} are in the reference library, so none are shown for "
        f"{'it' if len(names) == 1 else 'them'}."
    )


DARKER_TYPES = {"V", "VI"}
TONE_NOTICE = "The example photos are of lighter skin than yours: the same condition can look different on darker skin."


def skin_tone_notice(result: TurnResult) -> str | None:
    """Say so when a darker-skinned user is shown real examples none of which is recorded as darker skin.

    The default atlas (HAM10000) has no recorded skin types and is almost all light skin; the estimated type
    of a dermoscopic picture (ITA) is unreliable, so only a type from the atlas metadata counts as a match.
    """
    real = [ref for ref in result.references if ref.provider_id == ExemplarProvider.id and not ref.synthetic]
    if not real or not any(ref.extra.get("user_skin_type") in DARKER_TYPES for ref in real):
        return None
    matched = any(
        ref.extra.get("skin_type") in DARKER_TYPES and ref.extra.get("skin_type_source") == "metadata" for ref in real
    )
    return None if matched else TONE_NOTICE


@hookimpl
def extra_notices(result: TurnResult, audience: str) -> list[str] | None:
    ran = result.providers.get("references")
    if not isinstance(ran, list) or not any(ref.id == ExemplarProvider.id for ref in ran):
        return None
    notices = [skin_tone_notice(result)]
    atlases = [p.atlas for p in list(_REGISTERED) if p.atlas is not None]
    if atlases:
        covered = {c for atlas in atlases for c in atlas.conditions()}
        notices.append(missing_exemplar_notice(result, covered, audience))
    return [n for n in notices if n] or None


@hookimpl
def register_benchmarks(register: Callable[[str, BenchFn], None]) -> None:
    def bench(options: dict[str, Any]) -> dict[str, Any]:
        from dermchat.references.bench import configured, exemplar_latency

        return exemplar_latency(configured(ExemplarProvider()), options)

    register("ham-exemplars retrieval latency", bench)
