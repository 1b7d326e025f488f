"""Provider base classes: what a plugin registers for each capability.

Providers are cheap to construct (plugins register instances at start-up); the expensive part happens in
``load()``, which is lazy, idempotent and thread-safe, so a Space can start quickly and two concurrent chats
never load a model twice. Heavy libraries are imported inside ``_load()`` only.

Each base class below is one row of the capability table (``dermchat.capabilities``), which names the hook that
registers it, its registry key (the ``capability`` class attribute) and the engine step that calls it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

if TYPE_CHECKING:
    from dermchat.context import TurnContext
    from dermchat.results import Diagnosis, Explanation, MorphologyReport, QualityReport, Reference


class NoOptions(BaseModel):
    """Options model for providers that take none; unknown keys are an error, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


class ProviderError(RuntimeError):
    """A provider failed in a way worth showing to the user as-is (the message is plain language)."""


class Provider:
    """Common base: identity, availability, options and lazy loading."""

    capability: ClassVar[str] = ""
    id: str = ""
    label: str = ""
    version: str = "0"
    needs_gpu: bool = False
    description: str = ""
    Options: ClassVar[type[BaseModel]] = NoOptions

    def __init__(self) -> None:
        self._load_lock = threading.Lock()
        self._loaded = False
        self._load_progress: Callable[[str, float | None], None] | None = None
        self.options: BaseModel = self.Options()

    # -- configuration -------------------------------------------------------------------------------------
    def configure(self, options: dict[str, Any] | None) -> None:
        """Validate and apply per-provider options from settings; raises ``ValueError`` with the field named."""
        try:
            new = self.Options(**(options or {}))
        except ValidationError as exc:
            raise ValueError(f"invalid options for provider {self.id!r}: {exc}") from exc
        if new != self.options:
            with self._load_lock:
                self.options = new
                self._loaded = False  # options may change which weights load

    # -- availability and loading --------------------------------------------------------------------------
    def available(self) -> tuple[bool, str]:
        """Whether this provider can run here, and why not (weights missing, no GPU, no atlas...)."""
        return True, ""

    @property
    def loaded(self) -> bool:
        return self._loaded

    def load(self, progress: Callable[[str, float | None], None] | None = None) -> None:
        """Load models/data once; safe to call from many threads at once.

        ``progress(message, fraction)`` receives what ``_load`` reports through ``report_load`` (a first
        atlas build or model download can take minutes; the chat shows it).
        """
        if self._loaded:
            return
        with self._load_lock:
            if not self._loaded:
                self._load_progress = progress
                try:
                    self._load()
                finally:
                    self._load_progress = None
                self._loaded = True

    def _load(self) -> None:
        """Override to do the expensive work; import heavy libraries here."""

    def report_load(self, message: str, fraction: float | None = None) -> None:
        """Called from ``_load`` to tell whoever triggered the load how far it is."""
        if self._load_progress is not None:
            self._load_progress(message, fraction)

    def info(self) -> dict[str, Any]:
        ok, reason = _safe_available(self)
        return {
            "id": self.id,
            "label": self.label,
            "capability": self.capability,
            "version": self.version,
            "needs_gpu": self.needs_gpu,
            "available": ok,
            "reason": reason,
            "loaded": self._loaded,
            "description": self.description,
        }


def _safe_available(provider: Provider) -> tuple[bool, str]:
    """``available()`` must never take the listing down: a crash there reads as unavailable."""
    try:
        ok, reason = provider.available()
        return bool(ok), str(reason or "")
    except Exception as exc:  # noqa: BLE001 - any plugin bug is reported, not raised
        return False, f"availability check failed: {type(exc).__name__}: {exc}"


class QualityChecker(Provider):
    capability: ClassVar[str] = "quality"

    def check(self, ctx: TurnContext) -> QualityReport:
        raise NotImplementedError


class Diagnoser(Provider):
    capability: ClassVar[str] = "diagnoser"

    def diagnose(self, ctx: TurnContext) -> Diagnosis:
        raise NotImplementedError


class MorphologyDescriber(Provider):
    capability: ClassVar[str] = "morphology"

    def describe(self, ctx: TurnContext) -> MorphologyReport:
        """Describe the lesion in ``ctx.image`` (and compare it with ``ctx.earlier_image`` when there is one)."""
        raise NotImplementedError


class Explainer(Provider):
    capability: ClassVar[str] = "explainer"

    def explain(self, ctx: TurnContext) -> Explanation:
        """Explain ``ctx.diagnosis`` (or answer ``ctx.question`` about it, or suggest conditions to consider)."""
        raise NotImplementedError


class ReferenceGenerator(Provider):
    capability: ClassVar[str] = "references"
    synthetic: ClassVar[bool] = False

    def references(self, ctx: TurnContext) -> list[Reference]:
        raise NotImplementedError
