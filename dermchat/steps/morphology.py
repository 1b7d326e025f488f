"""The morphology step: describe the spot, check the description against the diagnosis (high-risk features
under a benign top condition widen the set and raise the tier), and compare with an earlier photo."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from dermchat import safety
from dermchat.morphology.consistency import MIN_TIER as DISAGREEMENT_TIER
from dermchat.morphology.consistency import check_consistency, widened
from dermchat.morphology.describe import Morphology, stolz_asymmetry
from dermchat.providers import MorphologyDescriber
from dermchat.results import MorphologyReport, StepEvent
from dermchat.steps.turn import Turn

DISAGREEMENT_NOTICE = (
    "What this photo shows ({features}) does not fit the image model's answer that it looks harmless. When the two "
    "disagree the safer reading wins: melanoma can't be ruled out, so please have the spot checked by a doctor."
)
CHANGE_NOTICE = (
    "Compared with your earlier photo, the spot seems to have {what}. A spot that grows or changes colour should be "
    "checked by a doctor, even if the photos were taken a little differently."
)


def describe_spot(turn: Turn) -> Iterator[StepEvent]:
    """Describe the spot, check the description against the diagnosis, compare with an earlier photo."""
    provider, why_not = turn.provider(MorphologyDescriber, turn.settings.morphology)
    if provider is None:
        if turn.ctx.earlier_image is not None:
            turn.result.notices.append(
                f"The earlier photo could not be compared ({turn.for_reader(why_not or 'no describer is configured')})."
            )
        if why_not:
            yield StepEvent(step="morphology", kind="skipped", message=why_not)
        return
    yield turn.start("morphology", provider)
    outcome = yield from turn.call("morphology", provider, lambda: provider.describe(turn.ctx))
    if outcome.error is not None:
        yield turn.fail("morphology", provider.id, outcome.error, "Describing the spot failed; continuing without it.")
        return
    report = outcome.value
    assert report is not None
    turn.note_provider(provider)
    turn.result.morphology = report
    _check_consistency(turn, report)
    _flag_change(turn, report)
    triage = turn.result.triage
    yield turn.done(
        "morphology",
        provider,
        outcome,
        "Observations and conclusion disagree" if report.disagrees else "Spot described",
        {"triage": triage.model_dump()} if triage else {},
    )


def _check_consistency(turn: Turn, report: MorphologyReport) -> None:
    """Benign top condition but high-risk features: say so, widen the set, raise the tier."""
    result = turn.result
    diagnosis = result.diagnosis
    if not report.descriptors or diagnosis is None:
        return
    finding = check_consistency(Morphology.from_dict(report.descriptors), diagnosis, turn.vocabulary)
    report.consistency = finding.as_dict()
    if not finding.disagrees:
        return
    result.diagnosis = widened(diagnosis, finding)
    if result.triage is not None:
        reason = "the photo's features disagree with a benign top condition (" + "; ".join(finding.features) + ")"
        result.triage = safety.at_least(
            result.triage, DISAGREEMENT_TIER, reason, drivers=finding.added_to_set or ["melanoma"]
        )
    result.notices.append(DISAGREEMENT_NOTICE.format(features=plain_features(report.descriptors)))


def _flag_change(turn: Turn, report: MorphologyReport) -> None:
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
    if turn.result.triage is not None:
        turn.result.triage = safety.at_least(
            turn.result.triage, "urgent", f"the spot seems to have {text} since the earlier photo"
        )
    turn.result.notices.append(CHANGE_NOTICE.format(what=text))


def plain_features(descriptors: dict[str, Any]) -> str:
    """The high-risk features in a patient's words ("four colours, a bluish-white haze")."""
    bits = []
    colours = descriptors.get("colours") or []
    if len(colours) >= 3:
        bits.append(f"{len(colours)} colours")
    if descriptors.get("blue_white_veil"):
        bits.append("a bluish-white haze")
    if stolz_asymmetry(descriptors) >= 2:
        bits.append("an uneven shape")
    return ", ".join(bits) or "several warning signs of the ABCD checklist"
