"""What one chat turn asks for: the typed input of ``DermChat.run_turn``.

One object instead of fifteen keyword arguments: callers (chat, API, CLI, study flow, benchmarks) build a
``TurnRequest``, the engine keeps it unchanged in the turn's context, and providers read it from there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dermchat.intake import ImageSource
    from dermchat.results import Audience, TurnResult


@dataclass(frozen=True)
class PatientDetails:
    """What the user chose to tell about the person (all optional): diagnosers may use it as evidence, reference
    images use the body site. Values are as given; the diagnoser validates them and says what it could not use."""

    age: float | None = None
    sex: str | None = None
    body_site: str | None = None


@dataclass
class TurnRequest:
    """The inputs of one turn.

    ``earlier_image`` is an earlier photo of the same spot: the morphology step compares the two, and a spot that
    grew or gained a colour raises the triage. ``previous`` and ``history`` carry the conversation (follow-up
    questions are about ``previous``); ``seen_references`` are reference images shown already. ``options`` travel to
    providers and observers as ``ctx.options``. ``settings_overrides`` change settings for this turn only;
    ``workdir`` and ``turn_id`` let a caller choose where the turn's files go and what it is called.
    """

    image: ImageSource | None = None
    question: str = ""
    audience: Audience | None = None
    earlier_image: ImageSource | None = None
    patient: PatientDetails = field(default_factory=PatientDetails)
    previous: TurnResult | None = None
    history: list[dict[str, str]] = field(default_factory=list)
    seen_references: set[str] = field(default_factory=set)
    force: bool = False
    options: dict[str, Any] = field(default_factory=dict)
    settings_overrides: dict[str, Any] | None = None
    workdir: str | Path | None = None
    turn_id: str | None = None
