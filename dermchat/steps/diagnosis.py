"""The diagnosis step: the configured diagnoser (or the offline one when it is missing or fails), its answer
made safe to render (vocabulary only, probabilities summing to one, less certainty for a poor photo), the
triage decided from it, and an optional second opinion that can only raise the triage."""

from __future__ import annotations

from collections.abc import Generator, Iterator

from dermchat import safety
from dermchat.providers import Diagnoser
from dermchat.results import Diagnosis, StepEvent
from dermchat.steps.red_flags import apply_red_flags
from dermchat.steps.streaming import StepOutcome
from dermchat.steps.turn import Turn, friendly_error

OFFLINE_DIAGNOSER = "ham-cnn"


def diagnose(turn: Turn) -> Generator[StepEvent, None, bool]:
    """Returns whether the turn goes on (an abstention still goes on to explanation)."""
    provider = _configured_or_offline(turn)
    if provider is None:
        yield StepEvent(step="diagnosis", kind="error", message=turn.result.message)
        return False
    yield turn.start("diagnosis", provider)
    outcome = yield from _run(turn, provider)
    if outcome.error is not None and provider.id != OFFLINE_DIAGNOSER:
        fallback, _ = turn.provider(Diagnoser, OFFLINE_DIAGNOSER)
        if fallback is not None:
            # A hub model that fails to load (gated, out of memory) must not cost the user this turn.
            yield _fall_back(turn, provider, outcome.error)
            provider = fallback
            outcome = yield from _run(turn, provider)
    if outcome.error is not None:
        turn.result.status = "diagnosis_failed"
        turn.result.message = (
            "Sorry, something went wrong while looking at the photo, so I can't give an answer this time. "
            f"Please try again later ({friendly_error(outcome.error)})."
        )
        yield turn.fail("diagnosis", provider.id, outcome.error, turn.result.message)
        return False
    assert outcome.value is not None
    turn.note_provider(provider)
    yield _record(turn, provider, outcome)
    yield from _second_opinion(turn, provider.id)
    apply_red_flags(turn)
    return True


def _configured_or_offline(turn: Turn) -> Diagnoser | None:
    """The configured diagnoser, else the offline one with a notice, else ``None`` with the turn failed."""
    provider, why_not = turn.provider(Diagnoser, turn.settings.diagnoser)
    if provider is None and turn.settings.diagnoser != OFFLINE_DIAGNOSER:
        fallback, _ = turn.provider(Diagnoser, OFFLINE_DIAGNOSER)
        if fallback is not None:
            turn.result.notices.append(f"{turn.for_reader(why_not or '')}. Using the offline image model instead.")
            return fallback
    if provider is None:
        turn.result.status = "diagnosis_failed"
        turn.result.message = (
            "Sorry, no image model is available right now, so I can't look at the photo. "
            f"({why_not or 'no diagnoser configured'})"
        )
    return provider


def _run(turn: Turn, provider: Diagnoser) -> Generator[StepEvent, None, StepOutcome[Diagnosis]]:
    return (
        yield from turn.call(
            "diagnosis", provider, lambda: outside_scope(turn, provider) or provider.diagnose(turn.ctx)
        )
    )


def _fall_back(turn: Turn, failed: Diagnoser, error: BaseException) -> StepEvent:
    """Say that the configured diagnoser failed and the offline one answers instead."""
    name = failed.label or failed.id
    turn.result.notices.append(f"{name} failed ({friendly_error(error)}). Using the offline image model instead.")
    return turn.fail("diagnosis", failed.id, error, f"{name} failed; using the offline image model instead.")


def _record(turn: Turn, provider: Diagnoser, outcome: StepOutcome[Diagnosis]) -> StepEvent:
    """Store the checked diagnosis and the triage decided from it; the "done" event carries the tier."""
    assert outcome.value is not None
    result = turn.result
    diagnosis = result.diagnosis = checked(turn, outcome.value)
    result.triage = safety.decide_triage(diagnosis, turn.vocabulary, result.quality)
    if diagnosis.abstained:
        result.status = "abstained"
        result.message = "This photo can't be assessed."
    return turn.done("diagnosis", provider, outcome, _summary(turn, diagnosis), {"triage": result.triage.model_dump()})


def outside_scope(turn: Turn, provider: Diagnoser) -> Diagnosis | None:
    """An abstention, without running the model, when the photo is not the kind the diagnoser knows.

    A dermoscopy-only model (``dermoscopy_only``; the offline ``ham-cnn``) read a phone photo of a drawn spot
    as "Mole 96%". The quality step says whether the photo looks dermoscopic (``QualityReport.dermoscopic``).
    """
    report = turn.result.quality
    dermoscopy_only = getattr(provider, "dermoscopy_only", provider.id == OFFLINE_DIAGNOSER)
    if not dermoscopy_only or report is None or report.dermoscopic is not False:
        return None
    return Diagnosis(
        provider_id=provider.id,
        provider_version=provider.version,
        abstained=True,
        abstain_reason=(
            "this looks like an ordinary photo, not a dermoscope close-up, and the image model only "
            "knows dermoscope close-ups of 7 kinds of skin spot"
        ),
        rationale=f"Not run: the quality step judged the photo non-dermoscopic ({report.dermoscopy_detail}).",
    )


def checked(turn: Turn, diagnosis: Diagnosis) -> Diagnosis:
    """A diagnoser's answer as the rest of the turn may use it: in the vocabulary, renormalised, discounted."""
    return _discounted(turn, _in_vocabulary(turn, diagnosis))


def _discounted(turn: Turn, diagnosis: Diagnosis) -> Diagnosis:
    """Less certainty from a photo below the quality bar, whether the user pressed "continue anyway" or the
    gate is switched off: with the gate off a poor photo must not get a full-confidence answer."""
    report = turn.result.quality
    if report is None or report.acceptable:
        return diagnosis
    reason = ", ".join(r.label.lower() for r in report.problems(2)) or "low quality score"
    return safety.discount_confidence(diagnosis, report.discount, reason)


def _in_vocabulary(turn: Turn, diagnosis: Diagnosis) -> Diagnosis:
    """Drop ids outside the vocabulary and renormalise (the one place probabilities are made to sum to one), so
    renderers and safety rules can trust the rows."""
    vocab = turn.vocabulary
    kept = [e for e in diagnosis.differential if e.condition_id in vocab]
    dropped = len(diagnosis.differential) - len(kept)
    total = sum(e.probability for e in kept)
    out = diagnosis.model_copy(deep=True)
    if dropped:
        out.notices.append(f"{dropped} label(s) from the model were not in DermChat's vocabulary and were left out.")
    out.differential = [e.model_copy(update={"probability": e.probability / total}) for e in kept] if total > 0 else []
    out.differential.sort(key=lambda e: e.probability, reverse=True)
    out.prediction_set = [c for c in out.prediction_set if c in vocab]
    return out


def _summary(turn: Turn, diagnosis: Diagnosis) -> str:
    if diagnosis.abstained:
        return "The image model abstained"
    top = diagnosis.top(1)
    if not top:
        return "No structured differential"
    name = turn.vocabulary.get(top[0].condition_id).name(turn.result.audience)
    return f"Most likely: {name} ({top[0].probability:.0%})"


def _second_opinion(turn: Turn, first_id: str) -> Iterator[StepEvent]:
    """A second diagnoser, when configured: compared with the first, and it can only raise the triage."""
    second_id = turn.settings.second_opinion
    if not second_id or second_id == first_id:
        return
    provider, _ = turn.provider(Diagnoser, second_id)
    if provider is None:
        return
    outcome = yield from turn.call("diagnosis", provider, lambda: provider.diagnose(turn.ctx))
    if outcome.error is not None:
        yield turn.fail("diagnosis", provider.id, outcome.error, "The second opinion failed.")
        return
    assert outcome.value is not None
    second = checked(turn, outcome.value)
    _compare(turn.result.diagnosis, second)
    turn.result.second_opinion = second
    before = turn.result.triage
    if before is not None:
        turn.result.triage = safety.escalate_for_second_opinion(before, second, turn.vocabulary)
        if turn.result.triage is not before:  # the diagnosis "done" event carried the earlier tier
            yield StepEvent(
                step="diagnosis",
                kind="progress",
                provider_id=provider.id,
                message="The second opinion raised the triage to urgent",
                data={"triage": turn.result.triage.model_dump()},
            )


def _compare(first: Diagnosis | None, second: Diagnosis) -> None:
    """Whether the two agree on the top condition, and which conditions both prediction sets hold."""
    if first is not None and first.differential and second.differential:
        second.extra["agrees_on_top"] = first.top(1)[0].condition_id == second.top(1)[0].condition_id
        second.extra["set_overlap"] = sorted(set(first.prediction_set) & set(second.prediction_set))
