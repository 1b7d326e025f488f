"""Built-in plugin: real exemplar reference images (``ham-exemplars``), their gaps and retrieval benchmark."""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any, Callable

from dermchat.hookspecs import BenchFn, hookimpl
from dermchat.references.exemplars import ExemplarProvider

if TYPE_CHECKING:
    from dermchat.results import TurnResult

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
TONE_NOTICE = (
    "The example photos are of lighter skin than yours: the same condition can look different on darker skin."
)


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
