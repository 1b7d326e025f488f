"""The turn pipeline: quality -> diagnosis -> explanation -> references, streamed as step events.

``DermChat.run_turn`` is a generator: the UI shows each event as it arrives and the last event carries the
one structured ``TurnResult``. Failures are isolated per step: a broken quality check, explainer or reference
generator degrades the turn with a short message; a broken diagnoser ends the turn politely.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import secrets
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Generator, Iterator, TypeVar

from dermchat import language, redflags, safety
from dermchat.capabilities import STEP_TITLES
from dermchat.context import TurnContext
from dermchat.intake import ImageInputError, ImageSource, decode_image
from dermchat.morphology.consistency import MIN_TIER as DISAGREEMENT_TIER
from dermchat.morphology.consistency import check_consistency, widened
from dermchat.morphology.describe import Morphology
from dermchat.plugin_manager import PluginManager
from dermchat.providers import Provider, ProviderError
from dermchat.registry import Registry, describe_exception, report_failure
from dermchat.retention import app_dir, make_private, prune_expired
from dermchat.results import (
    Audience,
    Diagnosis,
    Explanation,
    MorphologyReport,
    ProviderRef,
    QualityReport,
    Reference,
    StepError,
    StepEvent,
    StepName,
    TurnResult,
)
from dermchat.settings import Settings, load_settings
from dermchat.steps import StepOutcome, run_streaming
from dermchat.vocabulary import get_vocabulary

log = logging.getLogger(__name__)
T = TypeVar("T")

OFFLINE_DIAGNOSER = "ham-cnn"
DISAGREEMENT_NOTICE = (
    "What this photo shows ({features}) does not fit the image model's answer that it looks harmless. When the two "
    "disagree the safer reading wins: melanoma can't be ruled out, so please have the spot checked by a doctor."
)
CHANGE_NOTICE = (
    "Compared with your earlier photo, the spot seems to have {what}. A spot that grows or changes colour should be "
    "checked by a doctor, even if the photos were taken a little differently."
)


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
                message = (f"options were given for {provider_id!r}, but no loaded plugin provides it "
                           f"(known: {', '.join(sorted(known))})")
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
            except Exception:  # noqa: BLE001 - a turn will load (or fail on) the provider itself, per step
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
        pairs = [(cap, pid) for cap, ids in self.settings.chosen().items() for pid in (ids if isinstance(ids, list) else [ids])]
        for capability, provider_id in pairs:
            provider = self.provider(capability, provider_id)
            if provider is None:
                continue
            ok, reason = provider.available()
            if not ok:
                problems.append(f"{provider_id}: {reason}")
                continue
            self.loading = provider.label or provider_id
            try:
                provider.load()
            except Exception as exc:  # noqa: BLE001
                problems.append(f"{provider_id}: {describe_exception(exc)}")
        return problems

    # -- the turn --------------------------------------------------------------------------------------------
    def run_turn(
        self,
        image: ImageSource | None = None,
        question: str = "",
        *,
        audience: Audience | None = None,
        previous: TurnResult | None = None,
        history: list[dict[str, str]] | None = None,
        force: bool = False,
        settings_overrides: dict[str, Any] | None = None,
        seen_references: set[str] | None = None,
        workdir: str | Path | None = None,
        body_site: str | None = None,
        age: float | None = None,
        sex: str | None = None,
        turn_id: str | None = None,
        options: dict[str, Any] | None = None,
        earlier_image: ImageSource | None = None,
    ) -> Iterator[StepEvent]:
        """Run one turn, yielding step events; the last event has ``kind='result'``.

        ``earlier_image`` is an earlier photo of the same spot: the morphology step compares the two, and a spot
        that grew or gained a colour raises the triage.

        ``body_site``, ``age`` and ``sex`` are what the user chose to tell (all optional); diagnosers may
        use them as evidence, reference images use the body site.

        ``options`` travel to providers and observers as ``ctx.options`` (e.g. study mode's participant and
        arm, which the study plugin's ``turn_completed`` records).
        """
        turn = _Turn(
            app=self,
            settings=self.settings_for(settings_overrides),
            question=(question or "").strip(),
            audience=audience,
            previous=previous,
            history=history or [],
            force=force,
            seen_references=seen_references,
            workdir=workdir,
            body_site=body_site,
            age=age,
            sex=sex,
            turn_id=turn_id,
            options=options,
        )
        yield from turn.run(image, earlier_image)

    def run_turn_sync(self, image: ImageSource | None = None, question: str = "", **kwargs: Any) -> TurnResult:
        """Run a turn to completion and return its result (CLI, tests, study replays)."""
        result: TurnResult | None = None
        for event in self.run_turn(image, question, **kwargs):
            if event.kind == "result":
                result = event.result
        assert result is not None
        return result


class _Turn:
    """State of one running turn; keeps ``run_turn`` readable top to bottom."""

    def __init__(
        self,
        *,
        app: DermChat,
        settings: Settings,
        question: str,
        audience: Audience | None,
        previous: TurnResult | None,
        history: list[dict[str, str]],
        force: bool,
        seen_references: set[str] | None,
        workdir: str | Path | None,
        body_site: str | None,
        age: float | None,
        sex: str | None,
        turn_id: str | None,
        options: dict[str, Any] | None,
    ) -> None:
        self.app = app
        self.settings = settings
        self.force = force
        self.result = TurnResult(
            turn_id=turn_id or uuid.uuid4().hex[:12],
            audience=audience or settings.audience,
            question=question,
            settings_profile=settings.profile,
        )
        root = Path(workdir) if workdir else turns_dir(settings)
        if workdir is None:  # the app's own scratch area (a caller's folder is the caller's to keep)
            prune_expired(root, settings.retention_minutes)
        # A caller's turn id can be predictable (a study's is "<study>-<code>-<step>"): a random suffix keeps the
        # folder's files from being probed by URL, which would reveal which participant codes exist.
        self.workdir = root / (self.result.turn_id if turn_id is None else f"{turn_id}-{secrets.token_hex(8)}")
        self.workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.triage_floor = None  # the tier the safety policy decided, kept apart from what plugins can reach
        self.ctx = TurnContext(
            image=None,
            image_sha256=None,
            question=question,
            audience=self.result.audience,
            settings=settings,
            registry=app.registry,
            workdir=self.workdir,
            history=history,
            previous=previous,
            body_site=body_site,
            age=age,
            sex=sex,
            seen_references=set(seen_references or ()),
            options=dict(options or {}),
        )

    # -- helpers ---------------------------------------------------------------------------------------------
    def _provider(self, capability: str, provider_id: str | None) -> tuple[Provider | None, str | None]:
        """The configured provider if it exists and is available, else ``(None, reason)``."""
        if not provider_id:
            return None, None
        provider = self.app.provider(capability, provider_id)
        if provider is None:
            return None, f"provider {provider_id!r} is not installed"
        ok, reason = provider.available()
        if not ok:
            return None, f"{provider.label or provider_id} is unavailable: {reason}"
        return provider, None

    def _for_reader(self, why_not: str) -> str:
        """An unavailability reason as the notice shows it: patients get which part is missing, clinicians and
        the step log also get the technical cause ("download them first (hf download ...)")."""
        return why_not if self.result.audience == "clinician" else why_not.split(": ", 1)[0]

    def _note_provider(self, capability: str, provider: Provider) -> None:
        ref = ProviderRef(id=provider.id, version=provider.version)
        if capability == "references":
            existing = self.result.providers.setdefault("references", [])
            assert isinstance(existing, list)
            existing.append(ref)
        else:
            self.result.providers[capability] = ref

    def _call(self, step: StepName, provider: Provider, fn: Callable[[], T]) -> Generator[StepEvent, None, StepOutcome[T]]:
        """Load (lazily) and call a provider in a worker thread, streaming its progress."""

        def call(progress: Callable[[str, float | None], None]) -> T:
            self.ctx.progress = progress
            if not provider.loaded:
                progress(f"Loading {provider.label or provider.id} (first use)…", None)
                provider.load(progress)
            return fn()

        outcome = yield from run_streaming(step, provider.id, call)
        self.result.timings_ms[step] = round(self.result.timings_ms.get(step, 0.0) + outcome.elapsed_ms, 1)
        return outcome

    def _fail(self, step: StepName, provider_id: str | None, exc: BaseException, message: str) -> StepEvent:
        """Details (which may hold paths or tokens) go to the server log only; the result keeps an error id
        (and a ``ProviderError``'s message, which is written for users)."""
        error_id = report_failure(log, f"step {step} ({provider_id})", exc)
        self.result.errors.append(StepError(step=step, provider_id=provider_id,
                                            message=f"{friendly_error(exc)} (error id {error_id})"))
        return StepEvent(step=step, kind="error", message=message, provider_id=provider_id)

    def _start(self, step: StepName, provider: Provider) -> StepEvent:
        return StepEvent(step=step, kind="start", message=STEP_TITLES[step], provider_id=provider.id)

    def _finish(self) -> Iterator[StepEvent]:
        self._apply_red_flags()  # also for a turn stopped by the quality gate or a failed diagnoser
        vocab = self.app.vocabulary
        notices = list(self.result.notices)
        if self.result.diagnosis is not None:
            notices.extend(self.result.diagnosis.notices)
        if self.result.explanation is not None:
            notices.extend(self.result.explanation.notices)
            notices.extend(safety.asked_about_notices(self.result, vocab))
        # Hooks get copies (one each): a plugin can add notices, never change the result or what others see.
        for extra in self.app.plugins.call_each("extra_notices", audience=self.result.audience,
                                                fresh=lambda: {"result": self.result.model_copy(deep=True)}):
            notices.extend(str(item) for item in extra)
        self.result.notices = list(dict.fromkeys(n for n in notices if n))
        safety.enforce(self.result, vocab, self.triage_floor)  # last, on exactly what leaves the engine
        make_private(self.workdir)
        self.app.plugins.call_each("turn_completed", fresh=lambda: {"result": self.result.model_copy(deep=True),
                                                                    "context": self._observer_context()})
        yield StepEvent(step="turn", kind="result", message=self.result.message, result=self.result)

    def _observer_context(self) -> TurnContext:
        """An observer's own context: the study logger reads ``options`` after other observers have run."""
        copied = {name: getattr(self.ctx, name).model_copy(deep=True)
                  for name in ("quality", "diagnosis", "triage", "previous") if getattr(self.ctx, name) is not None}
        return dataclasses.replace(self.ctx, options=copy.deepcopy(self.ctx.options),
                                   history=copy.deepcopy(self.ctx.history),
                                   seen_references=set(self.ctx.seen_references), **copied)

    # -- the steps ---------------------------------------------------------------------------------------------
    def run(self, image: ImageSource | None, earlier_image: ImageSource | None = None) -> Iterator[StepEvent]:
        yield from self._wait_for_models()
        self._screen_message()
        if image is None:
            yield from self._text_only()
            return
        if not self._intake(image):
            yield StepEvent(step="intake", kind="error", message=self.result.message)
            yield from self._finish()
            return
        if earlier_image is not None:
            self._intake_earlier(earlier_image)
        yield StepEvent(step="intake", kind="done", message=STEP_TITLES["intake"], data={"size": self.result.image_size})
        proceed = yield from self._quality()
        if proceed:
            diagnosed = yield from self._diagnosis()
            if self.result.triage is not None:  # later providers share these objects: keep the policy's own copy
                self.triage_floor = self.result.triage.model_copy(deep=True)
            if diagnosed:
                yield from self._morphology()
                yield from self._explanation()
                yield from self._references()
        yield from self._finish()

    def _screen_message(self) -> None:
        """Red flags in the user's words (kept from earlier turns of the chat) and a notice when the message is not
        in English; both hold whatever the photo shows, so they run before any step."""
        earlier = self.ctx.previous.red_flags if self.ctx.previous is not None else []
        hits = {hit.id: hit for hit in [*earlier, *redflags.screen(self.result.question)]}
        self.result.red_flags = sorted(hits.values(), key=lambda h: h.urgency != "now")
        code = language.detect(self.result.question)
        if code:
            self.result.language = code
            self.result.notices.append(language.notice(code))

    def _apply_red_flags(self) -> None:
        """Warning signs the user described make the tier urgent, whatever the photo says (idempotent)."""
        self.result.triage = safety.with_red_flags(self.result.triage, self.result.red_flags)
        self.ctx.triage = self.result.triage

    def _wait_for_models(self) -> Iterator[StepEvent]:
        """A turn that arrives while the app is still loading its models waits for them, as a visible step."""
        if self.app.ready:
            return
        yield StepEvent(step="turn", kind="start", message=STEP_TITLES["turn"])
        start = time.perf_counter()
        while not self.app.wait_until_ready(timeout=1.0):
            yield StepEvent(step="turn", kind="progress", message=f"Loading {self.app.loading or 'the models'}…")
        yield StepEvent(step="turn", kind="done", message="Models loaded",
                        elapsed_ms=round((time.perf_counter() - start) * 1000, 1))

    def _intake(self, image: ImageSource) -> bool:
        try:
            decoded = decode_image(
                image,
                max_bytes=self.settings.max_upload_bytes,
                max_pixels=self.settings.max_image_pixels,
            )
        except ImageInputError as exc:
            self.result.status = "invalid_input"
            self.result.message = str(exc)
            return False
        self.ctx.image = decoded.image
        self.ctx.image_sha256 = decoded.sha256
        self.result.image_sha256 = decoded.sha256
        self.result.image_size = decoded.image.size
        self.result.notices.extend(decoded.notes)
        return True

    def _intake_earlier(self, image: ImageSource) -> None:
        """Decode the earlier photo the same way (metadata dropped); an unreadable one is named, not fatal."""
        try:
            decoded = decode_image(image, max_bytes=self.settings.max_upload_bytes,
                                   max_pixels=self.settings.max_image_pixels)
        except ImageInputError as exc:
            self.result.notices.append(f"The earlier photo could not be used for a comparison: {exc}")
            return
        self.ctx.earlier_image = decoded.image

    def _text_only(self) -> Iterator[StepEvent]:
        """No image: empty message, follow-up about the last result, or conditions to consider."""
        if not self.result.question:
            self.result.status = "invalid_input"
            self.result.message = "Your message was empty. Attach a photo of the skin, or describe what you see."
            yield from self._finish()
            return
        previous = self.ctx.previous
        if previous is not None and previous.diagnosis is not None:
            self.result.status = "followup"
            self.result.diagnosis = previous.diagnosis
            self.result.triage = previous.triage
            self.result.quality = previous.quality
            self.result.morphology = previous.morphology
            self.result.image_sha256 = previous.image_sha256
            self.ctx.diagnosis = previous.diagnosis
            self.ctx.quality = previous.quality
            self.ctx.triage = previous.triage
        else:
            self.result.status = "no_image"
            self.result.triage = previous.triage if previous is not None else None
            self.result.message = (
                "I don't have a photo yet. You can attach one, or answer a few questions so I can suggest "
                "conditions to discuss with a clinician."
            )
            for step in ("quality", "diagnosis", "references"):
                yield StepEvent(step=step, kind="skipped", message="No photo in this message, so this step was skipped.")  # type: ignore[arg-type]
        self._apply_red_flags()
        yield from self._explanation()
        yield from self._finish()

    def _quality(self) -> Iterator[StepEvent]:
        """Returns whether the turn goes on to diagnosis."""
        provider, why_not = self._provider("quality", self.settings.quality)
        if provider is None:
            if why_not:
                self.result.notices.append(f"Photo quality was not checked ({self._for_reader(why_not)}).")
                yield StepEvent(step="quality", kind="skipped", message=why_not)
            return True
        yield self._start("quality", provider)
        outcome = yield from self._call("quality", provider, lambda: provider.check(self.ctx))  # type: ignore[attr-defined]
        if outcome.error is not None:
            yield self._fail("quality", provider.id, outcome.error, "The photo quality check failed; continuing without it.")
            self.result.notices.append("Photo quality could not be checked this time.")
            return True
        report = outcome.value
        assert report is not None
        self._note_provider("quality", provider)
        self.result.quality = report
        self.ctx.quality = report
        yield StepEvent(
            step="quality", kind="done", provider_id=provider.id, elapsed_ms=outcome.elapsed_ms,
            message=f"Photo quality {report.score:.0f}/100 ({report.band})", data={"quality": report.model_dump()},
        )
        if not report.is_skin:
            self.result.status = "not_skin"
            self.result.message = (
                "This photo doesn't seem to show skin, so I can't look at it. Please send a close, "
                "well-lit photo of the skin area you're worried about."
            )
            return False
        if not report.acceptable and self.settings.quality_gate:
            if not self.force:
                tips = [r.patient_tip for r in report.problems(2) if r.patient_tip]
                self.result.status = "retake"
                self.result.message = (
                    "The photo isn't clear enough for a reliable look. "
                    + (" ".join(tips) + " " if tips else "")
                    + "Please retake it, or choose 'continue anyway'."
                )
                return False
            self.result.quality_overridden = True
        return True

    def _diagnosis(self) -> Iterator[StepEvent]:
        """Returns whether the turn goes on (an abstention still goes on to explanation)."""
        provider, why_not = self._provider("diagnoser", self.settings.diagnoser)
        if provider is None and self.settings.diagnoser != OFFLINE_DIAGNOSER:
            fallback, _ = self._provider("diagnoser", OFFLINE_DIAGNOSER)
            if fallback is not None:
                self.result.notices.append(f"{self._for_reader(why_not)}. Using the offline image model instead.")
                provider = fallback
        if provider is None:
            self.result.status = "diagnosis_failed"
            self.result.message = (
                "Sorry, no image model is available right now, so I can't look at the photo. "
                f"({why_not or 'no diagnoser configured'})"
            )
            yield StepEvent(step="diagnosis", kind="error", message=self.result.message)
            return False
        yield self._start("diagnosis", provider)
        outcome = yield from self._call(
            "diagnosis", provider, lambda: self._outside_scope(provider) or provider.diagnose(self.ctx))  # type: ignore[attr-defined]
        if outcome.error is not None and provider.id != OFFLINE_DIAGNOSER:
            fallback, _ = self._provider("diagnoser", OFFLINE_DIAGNOSER)
            if fallback is not None:
                # A hub model that fails to load (gated, out of memory) must not cost the user this turn.
                yield self._fail("diagnosis", provider.id, outcome.error,
                                 f"{provider.label or provider.id} failed; using the offline image model instead.")
                self.result.notices.append(
                    f"{provider.label or provider.id} failed ({friendly_error(outcome.error)}). "
                    "Using the offline image model instead."
                )
                provider = fallback
                outcome = yield from self._call(
                    "diagnosis", provider, lambda: self._outside_scope(provider) or provider.diagnose(self.ctx))  # type: ignore[attr-defined]
        if outcome.error is not None:
            self.result.status = "diagnosis_failed"
            self.result.message = (
                "Sorry, something went wrong while looking at the photo, so I can't give an answer this time. "
                f"Please try again later ({friendly_error(outcome.error)})."
            )
            yield self._fail("diagnosis", provider.id, outcome.error, self.result.message)
            return False
        diagnosis = outcome.value
        assert diagnosis is not None
        self._note_provider("diagnoser", provider)
        diagnosis = self._discounted(self._validated(diagnosis))
        report = self.result.quality
        self.result.diagnosis = diagnosis
        self.ctx.diagnosis = diagnosis
        self.result.triage = safety.decide_triage(diagnosis, self.app.vocabulary, report)
        if diagnosis.abstained:
            self.result.status = "abstained"
            self.result.message = "This photo can't be assessed."
        yield StepEvent(
            step="diagnosis", kind="done", provider_id=provider.id, elapsed_ms=outcome.elapsed_ms,
            message=self._diagnosis_summary(diagnosis), data={"triage": self.result.triage.model_dump()},
        )
        yield from self._second_opinion(provider.id)
        self._apply_red_flags()
        return True

    def _outside_scope(self, provider: Provider) -> Diagnosis | None:
        """An abstention, without running the model, when the photo is not the kind the diagnoser knows.

        A dermoscopy-only model (``dermoscopy_only``; the offline ``ham-cnn``) read a phone photo of a drawn spot
        as "Mole 96%". The quality step says whether the photo looks dermoscopic (``QualityReport.dermoscopic``).
        """
        report = self.result.quality
        dermoscopy_only = getattr(provider, "dermoscopy_only", provider.id == OFFLINE_DIAGNOSER)
        if not dermoscopy_only or report is None or report.dermoscopic is not False:
            return None
        return Diagnosis(
            provider_id=provider.id, provider_version=provider.version, abstained=True,
            abstain_reason=("this looks like an ordinary photo, not a dermoscope close-up, and the image model only "
                            "knows dermoscope close-ups of 7 kinds of skin spot"),
            rationale=f"Not run: the quality step judged the photo non-dermoscopic ({report.dermoscopy_detail}).",
        )

    def _discounted(self, diagnosis: Diagnosis) -> Diagnosis:
        """Less certainty from a photo below the quality bar, whether the user pressed "continue anyway" or the
        gate is switched off: with the gate off a poor photo must not get a full-confidence answer."""
        report = self.result.quality
        if report is None or report.acceptable:
            return diagnosis
        reason = ", ".join(r.label.lower() for r in report.problems(2)) or "low quality score"
        return safety.discount_confidence(diagnosis, report.discount, reason)

    def _validated(self, diagnosis: Diagnosis) -> Diagnosis:
        """Drop ids outside the vocabulary and renormalise, so renderers and safety rules can trust the rows."""
        vocab = self.app.vocabulary
        kept = [e for e in diagnosis.differential if e.condition_id in vocab]
        dropped = len(diagnosis.differential) - len(kept)
        total = sum(e.probability for e in kept)
        out = diagnosis.model_copy(deep=True)
        if dropped:
            out.notices.append(f"{dropped} label(s) from the model were not in DermChat's vocabulary and were left out.")
        out.differential = [
            e.model_copy(update={"probability": e.probability / total}) for e in kept
        ] if total > 0 else []
        out.differential.sort(key=lambda e: e.probability, reverse=True)
        out.prediction_set = [c for c in out.prediction_set if c in vocab]
        return out

    def _diagnosis_summary(self, diagnosis: Diagnosis) -> str:
        if diagnosis.abstained:
            return "The image model abstained"
        top = diagnosis.top(1)
        if not top:
            return "No structured differential"
        name = self.app.vocabulary.get(top[0].condition_id).name(self.result.audience)
        return f"Most likely: {name} ({top[0].probability:.0%})"

    def _second_opinion(self, first_id: str) -> Iterator[StepEvent]:
        second_id = self.settings.second_opinion
        if not second_id or second_id == first_id:
            return
        provider, why_not = self._provider("diagnoser", second_id)
        if provider is None:
            return
        outcome = yield from self._call("diagnosis", provider, lambda: provider.diagnose(self.ctx))  # type: ignore[attr-defined]
        if outcome.error is not None:
            yield self._fail("diagnosis", provider.id, outcome.error, "The second opinion failed.")
            return
        assert outcome.value is not None
        second = self._discounted(self._validated(outcome.value))
        first = self.result.diagnosis
        if first is not None and first.differential and second.differential:
            second.extra["agrees_on_top"] = first.top(1)[0].condition_id == second.top(1)[0].condition_id
            second.extra["set_overlap"] = sorted(set(first.prediction_set) & set(second.prediction_set))
        self.result.second_opinion = second
        if self.result.triage is not None:
            before = self.result.triage
            self.result.triage = safety.escalate_for_second_opinion(before, second, self.app.vocabulary)
            if self.result.triage is not before:  # the diagnosis "done" event carried the earlier tier
                yield StepEvent(step="diagnosis", kind="progress", provider_id=provider.id,
                                message="The second opinion raised the triage to urgent",
                                data={"triage": self.result.triage.model_dump()})

    def _morphology(self) -> Iterator[StepEvent]:
        """Describe the spot, check the description against the diagnosis, compare with an earlier photo."""
        provider, why_not = self._provider("morphology", self.settings.morphology)
        if provider is None:
            if self.ctx.earlier_image is not None:
                self.result.notices.append("The earlier photo could not be compared ("
                                           f"{self._for_reader(why_not or 'no describer is configured')}).")
            if why_not:
                yield StepEvent(step="morphology", kind="skipped", message=why_not)
            return
        yield self._start("morphology", provider)
        outcome = yield from self._call("morphology", provider, lambda: provider.describe(self.ctx))  # type: ignore[attr-defined]
        if outcome.error is not None:
            yield self._fail("morphology", provider.id, outcome.error, "Describing the spot failed; continuing without it.")
            return
        report = outcome.value
        assert report is not None
        self._note_provider("morphology", provider)
        self.result.morphology = report
        self._check_consistency(report)
        self._flag_change(report)
        yield StepEvent(
            step="morphology", kind="done", provider_id=provider.id, elapsed_ms=outcome.elapsed_ms,
            message="Observations and conclusion disagree" if report.disagrees else "Spot described",
            data={"triage": self.result.triage.model_dump()} if self.result.triage else {},
        )

    def _check_consistency(self, report: MorphologyReport) -> None:
        """Benign top condition but high-risk features: say so, widen the set, raise the tier."""
        diagnosis = self.result.diagnosis
        if not report.descriptors or diagnosis is None:
            return
        finding = check_consistency(Morphology.from_dict(report.descriptors), diagnosis, self.app.vocabulary)
        report.consistency = finding.as_dict()
        if not finding.disagrees:
            return
        self.result.diagnosis = self.ctx.diagnosis = widened(diagnosis, finding)
        if self.result.triage is not None:
            reason = "the photo's features disagree with a benign top condition (" + "; ".join(finding.features) + ")"
            self.result.triage = self.ctx.triage = safety.at_least(
                self.result.triage, DISAGREEMENT_TIER, reason, drivers=finding.added_to_set or ["melanoma"])
        plain = _plain_features(report.descriptors)
        self.result.notices.append(DISAGREEMENT_NOTICE.format(features=plain))

    def _flag_change(self, report: MorphologyReport) -> None:
        """Growth or a new or spreading colour since the earlier photo is a red flag for the triage."""
        comparison = report.comparison
        if not comparison or not comparison.get("red_flag"):
            return
        what = []
        if comparison.get("grew"):
            what.append("grown")
        if comparison.get("new_colours") or any(d > 0 for d in (comparison.get("colour_shifts") or {}).values()):
            what.append("changed colour")
        text = " and ".join(what) or "changed"
        if self.result.triage is not None:
            self.result.triage = self.ctx.triage = safety.at_least(
                self.result.triage, "urgent", f"the spot seems to have {text} since the earlier photo")
        self.result.notices.append(CHANGE_NOTICE.format(what=text))

    def _explanation(self) -> Iterator[StepEvent]:
        provider, why_not = self._provider("explainer", self.settings.explainer)
        if provider is None:
            if why_not:
                self.result.notices.append(f"No explanation this time ({why_not}).")
            return
        yield self._start("explanation", provider)
        outcome = yield from self._call("explanation", provider, lambda: provider.explain(self.ctx))  # type: ignore[attr-defined]
        if outcome.error is not None:
            self.result.notices.append("The explanation could not be prepared this time.")
            yield self._fail("explanation", provider.id, outcome.error, "The explanation step failed.")
            return
        explanation = outcome.value
        assert explanation is not None
        self._note_provider("explainer", provider)
        if not self.settings.show_citations:
            explanation = explanation.model_copy(update={"citations": []})
        self.result.explanation = explanation
        yield StepEvent(
            step="explanation", kind="done", provider_id=provider.id, elapsed_ms=outcome.elapsed_ms,
            message=f"{len(explanation.citations)} source(s) cited",
        )

    def _references(self) -> Iterator[StepEvent]:
        if not self.settings.show_references or self.settings.references_per_condition == 0:
            return
        diagnosis = self.result.diagnosis
        if diagnosis is None or diagnosis.abstained or not diagnosis.differential:
            return
        for provider_id in self.settings.references:
            provider, why_not = self._provider("references", provider_id)
            if provider is None:
                if why_not:
                    self.result.notices.append(f"Some reference images are not shown ({self._for_reader(why_not)}).")
                continue
            yield self._start("references", provider)
            outcome = yield from self._call("references", provider, lambda p=provider: p.references(self.ctx))  # type: ignore[attr-defined]
            if outcome.error is not None:
                self.result.notices.append(f"Reference images from {provider.label or provider.id} could not be prepared.")
                yield self._fail("references", provider.id, outcome.error, "A reference-image step failed.")
                continue
            self._note_provider("references", provider)
            for ref in outcome.value or []:
                if ref.synthetic and ref.verified is False:
                    self.result.hidden_references.append(ref)
                else:
                    self.result.references.append(ref)
            yield StepEvent(
                step="references", kind="done", provider_id=provider.id, elapsed_ms=outcome.elapsed_ms,
                message=f"{len(outcome.value or [])} reference image(s)",
            )
        if self.result.hidden_references:
            self.result.notices.append(
                f"{len(self.result.hidden_references)} generated image(s) were hidden because the image model did "
                "not recognise them as the intended condition."
            )



def _plain_features(descriptors: dict[str, Any]) -> str:
    """The high-risk features in a patient's words ("four colours, a bluish-white haze")."""
    bits = []
    colours = descriptors.get("colours") or []
    if len(colours) >= 3:
        bits.append(f"{len(colours)} colours")
    if descriptors.get("blue_white_veil"):
        bits.append("a bluish-white haze")
    if descriptors.get("asymmetry", 0) >= 2:
        bits.append("an uneven shape")
    return ", ".join(bits) or "several warning signs of the ABCD checklist"
