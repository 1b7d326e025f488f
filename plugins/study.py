"""Study logger (provider id ``study-logger``): records study turns from the ``turn_completed`` hook.

A turn belongs to a study when its context carries ``options['study']`` (set by the study flow: study id,
participant code, step, case, arm, database URL). Other turns (the ordinary chat) are ignored: nothing about
them is stored. The flow logs turns itself when the engine does not pass ``options`` through, so exactly one
of the two writes each turn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dermchat.hookspecs import hookimpl

if TYPE_CHECKING:
    from dermchat.context import TurnContext
    from dermchat.results import TurnResult

ID = "study-logger"
REQUIRED_KEYS = {"study_id", "participant", "step", "case_id", "arm", "db_url"}


@hookimpl
def turn_completed(result: TurnResult, context: TurnContext) -> None:
    tag = context.options.get("study") if context.options else None
    if not isinstance(tag, dict) or not REQUIRED_KEYS <= set(tag):
        return
    from dermchat.study.store import ParticipantNotFound, get_store
    from dermchat.study.turnlog import log_turn

    try:
        log_turn(get_store(tag["db_url"]), tag, result)
    except ParticipantNotFound:
        return  # the code was deleted (withdrawn) mid-turn: store nothing; the study flow tells the participant
