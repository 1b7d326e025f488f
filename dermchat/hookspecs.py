"""DermChat's plugin hooks. One-line docstrings here; the long explanation is in docs/plugins.md.

Capabilities are *registered*, not raced: each ``register_*`` hook hands plugins a ``register`` callable and
the settings pick one provider per capability by its stable id. Policy hooks (notices, observers) collect
contributions from every plugin.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from dermchat.context import TurnContext
    from dermchat.providers import Diagnoser, Explainer, MorphologyDescriber, QualityChecker, ReferenceGenerator
    from dermchat.results import TurnResult

PROJECT = "dermchat"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

BenchFn = Callable[[dict[str, Any]], dict[str, Any]]


@hookspec
def register_quality_checks(register: Callable[[QualityChecker], None]) -> None:
    """Register image-quality checkers by calling ``register(provider)``."""


@hookspec
def register_diagnosers(register: Callable[[Diagnoser], None]) -> None:
    """Register diagnosers (classifiers, VLMs, remote servers) by calling ``register(provider)``."""


@hookspec
def register_morphology_describers(register: Callable[[MorphologyDescriber], None]) -> None:
    """Register describers of what the photo shows (ABCD descriptors) by calling ``register(provider)``."""


@hookspec
def register_explainers(register: Callable[[Explainer], None]) -> None:
    """Register explainers (knowledge-base RAG, generators) by calling ``register(provider)``."""


@hookspec
def register_reference_generators(register: Callable[[ReferenceGenerator], None]) -> None:
    """Register reference-image providers (real exemplars, diffusion) by calling ``register(provider)``."""


@hookspec
def register_benchmarks(register: Callable[[str, BenchFn], None]) -> None:
    """Register ``register(name, fn)``: ``fn(options) -> dict`` of figures printed by ``dermchat bench``."""


@hookspec
def extra_notices(result: TurnResult, audience: str) -> list[str] | None:
    """Return extra notices/disclaimers to show with a turn's answer."""


@hookspec
def turn_completed(result: TurnResult, context: TurnContext) -> None:
    """Observe a finished turn (logging, study mode); exceptions are caught and listed, never shown to users."""
