"""The turn pipeline: quality -> diagnosis -> explanation -> references, streamed as step events.

``DermChat.run_turn(request)`` is a generator: the UI shows each event as it arrives and the last event carries
the one structured ``TurnResult``. This module only sequences the steps; each lives in ``dermchat/steps/``.
Failures are isolated per step: a broken quality check, explainer or reference generator degrades the turn
with a short message; a broken diagnoser ends the turn politely.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Iterator
from typing import Any

from dermchat.capabilities import STEP_TITLES
from dermchat.plugin_manager import PluginManager
from dermchat.providers import Provider
from dermchat.registry import Registry, describe_exception
from dermchat.request import TurnRequest
from dermchat.results import StepEvent, TurnResult
from dermchat.settings import Settings, load_settings
from dermchat.steps.diagnosis import diagnose
from dermchat.steps.explanation import explain
from dermchat.steps.finish import finish
from dermchat.steps.intake import read_earlier_photo, read_photo, wait_for_models
from dermchat.steps.morphology import describe_spot
from dermchat.steps.quality import check_quality
from dermchat.steps.red_flags import apply_red_flags, screen_message
from dermchat.steps.references import find_references
from dermchat.steps.turn import Turn, friendly_error, turns_dir
from dermchat.steps.without_photo import carry_over, refuse_empty
from dermchat.vocabulary import get_vocabulary

__all__ = ["STEP_TITLES", "DermChat", "TurnRequest", "friendly_error", "turns_dir"]
log = logging.getLogger(__name__)


def _warm_red_flag_screen() -> list[str]:
    """Load the learned red-flag screen's weights now, so the first message does not wait for them (0.4 s)."""
    from dermchat.redflags.learned import learned_screen

    try:
        learned_screen()
    except Exception as exc:  # noqa: BLE001 - the rules still screen without it
        return [f"learned red-flag screen: {describe_exception(exc)}"]
    return []


class DermChat:
    """One configured app: settings, plugins and the providers they registered."""

    def __init__(self, settings: Settings | None = None, plugins: PluginManager | None = None) -> None:
        self.settings = settings or load_settings()
        self.plugins = plugins or PluginManager()
        self.vocabulary = get_vocabulary()
        self._configure_lock = threading.Lock()
        self.configuration_errors: list[str] = []
        self._ready = threading.Event()
        self._ready.set()  # nothing is loading until ``start_warm_up``; providers then load on first use
        self.loading: str = ""  # the provider the background warm-up is loading now (the page shows it)
        self.warm_up_problems: list[str] = []
        self.configure(self.settings)

    # -- configuration ---------------------------------------------------------------------------------------
    @property
    def registry(self) -> Registry:
        return self.plugins.collect()

    def configure(self, settings: Settings) -> None:
        """Apply per-provider options; invalid options are recorded (and raised in strict mode)."""
        with self._configure_lock:
            self.settings = settings
            self.configuration_errors = []
            known: set[str] = set()
            for by_id in self.registry.providers.values():
                for provider_id, provider in by_id.items():
                    known.add(provider_id)
                    try:
                        provider.configure(settings.provider_options(provider_id))
                    except ValueError as exc:
                        self.configuration_errors.append(str(exc))
                        log.warning("%s", exc)
            for provider_id in sorted(set(settings.options) - known):  # a typo would otherwise do nothing, silently
                message = (
                    f"options were given for {provider_id!r}, but no loaded plugin provides it "
                    f"(known: {', '.join(sorted(known))})"
                )
                self.configuration_errors.append(message)
                log.warning("%s", message)

    def settings_for(self, overrides: dict[str, Any] | None) -> Settings:
        if not overrides:
            return self.settings
        merged = self.settings.model_dump()
        merged.update(overrides)
        return Settings(**merged)

    def provider(self, capability: str, provider_id: str | None) -> Provider | None:
        if not provider_id:
            return None
        try:
            return self.registry.get(capability, provider_id)
        except KeyError:
            return None

    @property
    def ready(self) -> bool:
        """False while ``start_warm_up``'s thread is still loading models."""
        return self._ready.is_set()

    def wait_until_ready(self, timeout: float | None = None) -> bool:
        return self._ready.wait(timeout)

    def start_warm_up(self) -> threading.Thread:
        """Load the configured providers in a background thread, so the page can be served meanwhile.

        Why: loading took 7 s on a quiet machine and 24 s on a busy one before the page was served at all. A
        turn that arrives meanwhile waits for the warm-up (``run_turn`` shows it as a step) rather than
        loading a second copy beside it or failing; problems land in ``warm_up_problems`` and the log.
        """
        self._ready.clear()

        def work() -> None:
            try:
                self.warm_up_problems = self.warm_up()
                for problem in self.warm_up_problems:
                    log.warning("provider not ready: %s", problem)
            except Exception:  # a turn will load (or fail on) the provider itself, per step
                log.exception("model warm-up failed")
            finally:
                self.loading = ""
                self._ready.set()

        thread = threading.Thread(target=work, name="dermchat-warm-up", daemon=True)
        thread.start()
        return thread

    def warm_up(self) -> list[str]:
        """Load the configured providers now (a Space does this at start-up); returns any problems."""
        problems: list[str] = []
        pairs = [
            (cap, pid)
            for cap, ids in self.settings.chosen().items()
            for pid in (ids if isinstance(ids, list) else [ids])
        ]
        for capability, provider_id in pairs:
            provider = self.provider(capability, provider_id)
            if provider is None:
                continue
            ok, reason = provider.available()
            if not ok:
                problems.append(f"{provider_id}: {reason}")
                continue
            self.loading = provider.label or provider.id
            try:
                provider.load()
            except Exception as exc:  # noqa: BLE001
                problems.append(f"{provider_id}: {describe_exception(exc)}")
        problems.extend(_warm_red_flag_screen())
        return problems

    # -- the turn --------------------------------------------------------------------------------------------
    def run_turn(self, request: TurnRequest) -> Iterator[StepEvent]:
        """Run one turn, yielding step events; the last event has ``kind='result'``."""
        turn = Turn(self, _normalised(request))
        yield from wait_for_models(turn)
        screen_message(turn)
        image = turn.request.image
        if image is None:
            yield from _without_photo(turn)
        elif read_photo(turn, image):
            yield from _with_photo(turn)
        else:
            yield StepEvent(step="intake", kind="error", message=turn.result.message)
        yield from finish(turn)

    def run_turn_sync(self, request: TurnRequest) -> TurnResult:
        """Run a turn to completion and return its result (CLI, tests, study replays)."""
        result: TurnResult | None = None
        for event in self.run_turn(request):
            if event.kind == "result":
                result = event.result
        assert result is not None
        return result


def _normalised(request: TurnRequest) -> TurnRequest:
    """The request as the turn keeps it: the question trimmed, and its own copies of what steps may change."""
    return dataclasses.replace(
        request,
        question=(request.question or "").strip(),
        history=request.history or [],
        seen_references=set(request.seen_references or ()),
        options=dict(request.options or {}),
    )


def _without_photo(turn: Turn) -> Iterator[StepEvent]:
    """No image: an empty message is refused; otherwise the explainer answers (a follow-up or conditions)."""
    if refuse_empty(turn):
        return
    yield from carry_over(turn)
    apply_red_flags(turn)
    yield from explain(turn)


def _with_photo(turn: Turn) -> Iterator[StepEvent]:
    """Quality, then diagnosis; a diagnosed photo goes on to morphology, explanation and references."""
    if turn.request.earlier_image is not None:
        read_earlier_photo(turn, turn.request.earlier_image)
    yield StepEvent(step="intake", kind="done", message=STEP_TITLES["intake"], data={"size": turn.result.image_size})
    if not (yield from check_quality(turn)):
        return
    diagnosed = yield from diagnose(turn)
    if turn.result.triage is not None:  # later providers share these objects: keep the policy's own copy
        turn.triage_floor = turn.result.triage.model_copy(deep=True)
    if diagnosed:
        yield from describe_spot(turn)
        yield from explain(turn)
        yield from find_references(turn)
