"""The end of every turn: collect the notices, let plugins add theirs, enforce the safety policy on exactly what
leaves the engine, and tell observers (each gets its own copy)."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator

from dermchat import safety
from dermchat.context import TurnContext
from dermchat.results import StepEvent, TurnResult
from dermchat.retention import make_private
from dermchat.steps.red_flags import apply_red_flags
from dermchat.steps.turn import Turn


def finish(turn: Turn) -> Iterator[StepEvent]:
    apply_red_flags(turn)  # also for a turn stopped by the quality gate or a failed diagnoser
    result = turn.result
    result.notices = _all_notices(turn)
    safety.enforce(result, turn.vocabulary, turn.triage_floor)  # last, on exactly what leaves the engine
    make_private(turn.workdir)
    turn.app.plugins.call_each("turn_completed", fresh=lambda: _observer_copies(turn))
    yield StepEvent(step="turn", kind="result", message=result.message, result=result)


def _all_notices(turn: Turn) -> list[str]:
    """The turn's notices, the steps' and the plugins' (``extra_notices``), without repeats or blanks."""
    result, vocab = turn.result, turn.vocabulary
    notices = list(result.notices)
    if result.diagnosis is not None:
        notices.extend(result.diagnosis.notices)
    if result.explanation is not None:
        notices.extend(result.explanation.notices)
        notices.extend(safety.asked_about_notices(result, vocab))
    # Hooks get copies (one each): a plugin can add notices, never change the result or what others see.
    for extra in turn.app.plugins.call_each(
        "extra_notices", audience=result.audience, fresh=lambda: {"result": result.model_copy(deep=True)}
    ):
        notices.extend(str(item) for item in extra)
    return list(dict.fromkeys(n for n in notices if n))


def _observer_copies(turn: Turn) -> dict[str, TurnResult | TurnContext]:
    """An observer's own result and context (reading that same copy): changing them changes nothing others see;
    the study logger reads ``options`` after other observers have run."""
    result = turn.result.model_copy(deep=True)
    request = dataclasses.replace(
        turn.request,
        options=copy.deepcopy(turn.request.options),
        history=copy.deepcopy(turn.request.history),
        seen_references=set(turn.request.seen_references),
        previous=turn.request.previous.model_copy(deep=True) if turn.request.previous is not None else None,
    )
    context = dataclasses.replace(turn.ctx, request=request, result=result)
    return {"result": result, "context": context}
