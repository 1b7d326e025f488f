"""The state of one running turn and what every step does with it: find a provider, call it while streaming its
progress, record a failure politely.

``Turn`` holds the request (unchanged), the settings for this turn, the result being built and the context
providers see (which reads that same result), so a step writes its output once, on ``turn.result``.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from collections.abc import Callable, Generator
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from dermchat.capabilities import STEP_TITLES
from dermchat.context import TurnContext
from dermchat.providers import Provider, ProviderError
from dermchat.registry import report_failure
from dermchat.request import TurnRequest
from dermchat.results import (
    ProviderRef,
    StepError,
    StepEvent,
    StepName,
    Triage,
    TurnResult,
)
from dermchat.retention import app_dir, prune_expired
from dermchat.settings import Settings
from dermchat.steps.streaming import StepOutcome, run_streaming
from dermchat.vocabulary import Vocabulary

if TYPE_CHECKING:
    from dermchat.engine import DermChat

log = logging.getLogger("dermchat.engine")
T = TypeVar("T")
P = TypeVar("P", bound=Provider)


def turns_dir(settings: Settings) -> Path:
    """Where turns write their files (heat maps, reference copies); the UI serves files from here.

    A private folder the app made (``dermchat.retention.app_dir``): the retention clean-up prunes it, so a
    folder with someone else's files is refused, and a planted link at the default temp path is not followed.
    """
    return app_dir(Path(settings.workdir) / "dermchat-turns" if settings.workdir else None, "dermchat-turns")


def friendly_error(exc: BaseException) -> str:
    """Messages from ``ProviderError`` are meant for users; anything else gets a generic line."""
    if isinstance(exc, ProviderError):
        return str(exc)
    return f"an internal error occurred ({type(exc).__name__})"


def _turn_folder(settings: Settings, request: TurnRequest, turn_id: str) -> Path:
    """The folder for this turn's files, made private (mode 0700).

    A caller's turn id can be predictable (a study's is "<study>-<code>-<step>"): a random suffix keeps the
    folder's files from being probed by URL, which would reveal which participant codes exist.
    """
    root = Path(request.workdir) if request.workdir else turns_dir(settings)
    if request.workdir is None:  # the app's own scratch area (a caller's folder is the caller's to keep)
        prune_expired(root, settings.retention_minutes)
    folder = root / (turn_id if request.turn_id is None else f"{request.turn_id}-{secrets.token_hex(8)}")
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return folder


class Turn:
    """One running turn: its request, settings, result being built and the providers' context."""

    def __init__(self, app: DermChat, request: TurnRequest) -> None:
        self.app = app
        self.request = request
        self.settings = app.settings_for(request.settings_overrides)
        self.result = TurnResult(
            turn_id=request.turn_id or uuid.uuid4().hex[:12],
            audience=request.audience or self.settings.audience,
            question=request.question,
            settings_profile=self.settings.profile,
        )
        self.workdir = _turn_folder(self.settings, request, self.result.turn_id)
        self.triage_floor: Triage | None = None  # the tier the safety policy decided, apart from what plugins reach
        self.ctx = TurnContext(settings=self.settings, workdir=self.workdir, request=request, result=self.result)

    @property
    def vocabulary(self) -> Vocabulary:
        return self.app.vocabulary

    def provider(self, kind: type[P], provider_id: str | None) -> tuple[P | None, str | None]:
        """The configured provider of capability ``kind`` if it exists and is available, else ``(None, reason)``."""
        if not provider_id:
            return None, None
        provider = self.app.provider(kind.capability, provider_id)
        if not isinstance(provider, kind):
            return None, f"provider {provider_id!r} is not installed"
        ok, reason = provider.available()
        if not ok:
            return None, f"{provider.label or provider_id} is unavailable: {reason}"
        return provider, None

    def provider_or_notice(
        self, kind: type[P], provider_id: str | None, notice: str, technical: bool = False
    ) -> tuple[P | None, str | None]:
        """``provider()``, and when the provider is missing the ``notice`` (with ``{why}``: the reason, as
        ``for_reader`` shows it unless ``technical``) tells the user what the answer lacks."""
        provider, why_not = self.provider(kind, provider_id)
        if provider is None and why_not:
            self.result.notices.append(notice.format(why=why_not if technical else self.for_reader(why_not)))
        return provider, why_not

    def for_reader(self, why_not: str) -> str:
        """An unavailability reason as the notice shows it: patients get which part is missing, clinicians and
        the step log also get the technical cause ("download them first (hf download ...)")."""
        return why_not if self.result.audience == "clinician" else why_not.split(": ", 1)[0]

    def note_provider(self, provider: Provider) -> None:
        """Record which provider (and version) produced a step's output; reference providers add up."""
        ref = ProviderRef(id=provider.id, version=provider.version)
        if provider.capability == "references":
            existing = self.result.providers.setdefault("references", [])
            assert isinstance(existing, list)
            existing.append(ref)
        else:
            self.result.providers[provider.capability] = ref

    def call(
        self, step: StepName, provider: Provider, fn: Callable[[], T]
    ) -> Generator[StepEvent, None, StepOutcome[T]]:
        """Load (lazily) and call a provider in a worker thread, streaming its progress; the step's time adds up."""

        def call(progress: Callable[[str, float | None], None]) -> T:
            self.ctx.progress = progress
            if not provider.loaded:
                progress(f"Loading {provider.label or provider.id} (first use)…", None)
                provider.load(progress)
            return fn()

        outcome = yield from run_streaming(step, provider.id, call)
        self.result.timings_ms[step] = round(self.result.timings_ms.get(step, 0.0) + outcome.elapsed_ms, 1)
        return outcome

    def fail(self, step: StepName, provider_id: str | None, exc: BaseException, message: str) -> StepEvent:
        """Details (which may hold paths or tokens) go to the server log only; the result keeps an error id
        (and a ``ProviderError``'s message, which is written for users)."""
        error_id = report_failure(log, f"step {step} ({provider_id})", exc)
        self.result.errors.append(
            StepError(step=step, provider_id=provider_id, message=f"{friendly_error(exc)} (error id {error_id})")
        )
        return StepEvent(step=step, kind="error", message=message, provider_id=provider_id)

    def start(self, step: StepName, provider: Provider) -> StepEvent:
        return StepEvent(step=step, kind="start", message=STEP_TITLES[step], provider_id=provider.id)

    def done(
        self,
        step: StepName,
        provider: Provider,
        outcome: StepOutcome[T],
        message: str,
        data: dict[str, object] | None = None,
    ) -> StepEvent:
        """The step's "done" event, with the provider and the time its call took."""
        return StepEvent(
            step=step,
            kind="done",
            provider_id=provider.id,
            elapsed_ms=outcome.elapsed_ms,
            message=message,
            data=data or {},
        )
