"""The capability table: every kind of provider a plugin can add, with all the names it goes by, in one place.

A capability used to have three names in three tables (``register_diagnosers`` in the registry, ``diagnoser`` in
the providers, ``diagnosis`` in the engine's step titles), so a newcomer had to find all three to follow one
capability and adding one meant editing three files that could drift apart. The registry keys, the hook each
plugin implements and the step titles the chat shows are now derived from the rows below; the tests check the
rows against the hookspecs, the provider base classes, ``Settings`` and ``results.StepName``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from dermchat.providers import Diagnoser, Explainer, MorphologyDescriber, Provider, QualityChecker, ReferenceGenerator

if TYPE_CHECKING:
    from dermchat.results import StepName


@dataclass(frozen=True)
class Capability:
    """One capability under all its names.

    ``key``: the registry key, the ``Settings`` field that chooses the provider(s), ``Provider.capability`` and
    the key of ``TurnResult.providers``. ``register_hook``: the hookspec plugins implement to add providers.
    ``step``: the engine step that runs it (``StepEvent.step``, the key of ``TurnResult.timings_ms``).
    ``title``: what the chat shows while that step runs.
    """

    key: str
    provider_class: type[Provider]
    register_hook: str
    step: StepName
    title: str


CAPABILITIES: tuple[Capability, ...] = (
    Capability("quality", QualityChecker, "register_quality_checks", "quality", "Checking photo quality"),
    Capability("diagnoser", Diagnoser, "register_diagnosers", "diagnosis", "Looking at the skin"),
    Capability(
        "morphology", MorphologyDescriber, "register_morphology_describers", "morphology", "Describing the spot"
    ),
    Capability("explainer", Explainer, "register_explainers", "explanation", "Looking up trusted sources"),
    Capability(
        "references", ReferenceGenerator, "register_reference_generators", "references", "Finding reference images"
    ),
)
"""In pipeline order (quality -> diagnosis -> morphology -> explanation -> references)."""

_BY_KEY: dict[str, Capability] = {cap.key: cap for cap in CAPABILITIES}

STEP_TITLES: dict[str, str] = {
    "intake": "Reading your photo",
    **{cap.step: cap.title for cap in CAPABILITIES},
    "turn": "Loading the models (the app has just started)",
}
"""Every step the chat shows, with its title: the capabilities' steps plus the two that run no provider."""


def capability(key: str) -> Capability:
    """The row for a registry key; a ``KeyError`` names the keys that exist (a typo must not read as 'none')."""
    try:
        return _BY_KEY[key]
    except KeyError:
        raise KeyError(f"no capability {key!r} (known: {', '.join(_BY_KEY)})") from None


def capability_keys() -> list[str]:
    """The registry keys in pipeline order."""
    return list(_BY_KEY)
