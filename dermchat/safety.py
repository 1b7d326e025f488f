"""Safety policy that no plugin, retrieved passage or user message can switch off.

The pipeline applies it after every provider has spoken: the triage tier is the *maximum* of the
provider's hint and these rules, suspected malignancy always yields "see a clinician", and the
not-a-diagnosis notice is attached to every result.
"""

from __future__ import annotations

from typing import Any

from dermchat import redflags
from dermchat.pathways import pathway_for
from dermchat.results import TRIAGE_ORDER, Diagnosis, QualityReport, RedFlagHit, Triage, TriageTier, TurnResult
from dermchat.vocabulary import Vocabulary

NOT_A_DIAGNOSIS = (
    "DermChat is not a diagnosis and not medical advice. It can be wrong. "
    "Only a clinician who examines you can diagnose a skin condition."
)
SEE_CLINICIAN_URGENT = (
    "Please see a doctor or dermatologist soon (within about two weeks, sooner if it is changing fast, "
    "bleeding or painful): something in this photo needs to be checked in person."
)
RED_FLAG_NOTICE = (
    "Seek same-day care if you have a fever, the area is spreading quickly, very painful, near the eye, "
    "or you feel unwell."
)
SYNTHETIC_NOTICE = "Images marked 'synthetic' are computer-generated illustrations, not your photo or diagnosis."
ABSTAIN_NOTICE = (
    "This photo can't be assessed: DermChat's image model only knows dermoscope close-ups (photos taken through "
    "a skin magnifier) of 7 kinds of skin spot, and it could not read this one, so it gives no list of likely "
    "conditions. That is not a sign that all is well: it can't rule anything out. Show the spot to a doctor "
    "(within about two weeks if it is new, changing, bleeding or itching, or if you are worried), or retake it as "
    "a sharp, well-lit close-up."
)
SEE_CLINICIAN_ROUTINE = (
    "Please show this to a doctor: a routine (non-urgent) appointment is the usual route, sooner if it grows, "
    "bleeds or does not heal. A condition that needs treatment can't be ruled out from this photo."
)
# A probability at which a malignant condition anywhere in the differential is worth a clinician's look,
# even when it is outside the prediction set. Deliberately low: missing a cancer costs more than a visit.
MALIGNANT_ALERT_PROBABILITY = 0.15


def _max_tier(a: TriageTier, b: TriageTier) -> TriageTier:
    return a if TRIAGE_ORDER[a] >= TRIAGE_ORDER[b] else b


def decide_triage(diagnosis: Diagnosis, vocab: Vocabulary, quality: QualityReport | None = None) -> Triage:
    """Triage from each possible condition's guidance pathway (``dermchat/pathways.py``), never below the floors:
    a malignant condition always means "see a clinician", a provider's urgent hint stands unless guidance
    traces it to non-urgent conditions only, and a photo the model cannot read is "can't assess" (or urgent when
    what the model saw before abstaining still flags melanoma: an unreadable photo is never calmer)."""
    candidates = set(diagnosis.prediction_set) | {
        e.condition_id for e in diagnosis.differential if e.probability >= MALIGNANT_ALERT_PROBABILITY
    }
    known = sorted(c for c in candidates if c in vocab)
    tiers = {c: _condition_tier(c, vocab) for c in known}
    tier: TriageTier = max(tiers.values(), key=TRIAGE_ORDER.__getitem__, default="reassure")
    drivers = [c for c in known if tiers[c] == "urgent"]
    reasons = [f"possible {vocab.get(c).clinician_name} ({_pathway_text(c)})" for c in known if tiers[c] != "reassure"]
    if diagnosis.abstained:
        tier = _max_tier(tier, "cant_assess")
        reasons.append("the image model could not assess this photo")
        if _melanoma_flag(diagnosis) and "melanoma" in vocab:
            tier, drivers = "urgent", ["melanoma"]
            reasons.append("before abstaining, the model's own high-sensitivity melanoma flag was raised")
    if not diagnosis.differential and not diagnosis.abstained:
        tier = _max_tier(tier, "routine")
        reasons.append("no structured differential")
    if quality is not None and not quality.acceptable:
        tier = _max_tier(tier, "routine")
        reasons.append("photo quality below threshold")
    if len(diagnosis.prediction_set) > 1 and tier == "reassure":
        tier = "routine"
        reasons.append("several conditions remain possible")
    hint = _guided_hint(diagnosis, tiers, vocab)
    if hint is not None and (TRIAGE_ORDER[hint] > TRIAGE_ORDER[tier] or (hint == "urgent" and tier != "urgent")):
        tier = hint
        reasons.append(diagnosis.triage_reason or f"{diagnosis.provider_id} suggested {hint}")
        if tier == "urgent":
            drivers = _likeliest_malignant(diagnosis, vocab)
    if tier == "reassure":
        reasons.append("only benign conditions are likely")
    lead = (drivers or [c for c in sorted(known, key=lambda c: -TRIAGE_ORDER[tiers[c]]) if tiers[c] == tier])[:1]
    path = pathway_for(lead[0]) if lead else None
    return Triage(
        tier=tier,
        reason="; ".join(reasons),
        drivers=drivers if tier == "urgent" else [],
        pathway=path.pathway if path else None,
        advice=path.reason if path and tier != "cant_assess" else None,
        sources=sorted(
            {
                p.source
                for c in [*drivers, *(c for c in known if tiers[c] == tier)]
                if (p := pathway_for(c)) and tier != "cant_assess"
            }
        ),
    )


def _condition_tier(condition_id: str, vocab: Vocabulary) -> TriageTier:
    """The guidance tier of one condition, with the safety floors: malignant >= routine, red flag = urgent."""
    cond = vocab.get(condition_id)
    path = pathway_for(condition_id)
    tier: TriageTier = path.tier if path else ("urgent" if cond.malignant else "reassure")
    if cond.red_flag:
        tier = "urgent"
    if cond.malignant:
        tier = _max_tier(tier, "routine")
    return tier


def _pathway_text(condition_id: str) -> str:
    path = pathway_for(condition_id)
    return path.pathway if path else "no pathway on file"


def _provider_figures(diagnosis: Diagnosis) -> dict[str, Any]:
    """The provider's own figures, whether or not the photo-quality discount set them aside."""
    figures: dict[str, Any] = diagnosis.extra.get("before_quality_discount", diagnosis.extra)
    return figures


def _melanoma_flag(diagnosis: Diagnosis) -> bool:
    """Whether the provider's own high-sensitivity melanoma threshold fired (``melanoma_probability`` and
    ``melanoma_threshold`` in its figures; providers without them never raise it)."""
    figures = _provider_figures(diagnosis)
    probability, threshold = figures.get("melanoma_probability"), figures.get("melanoma_threshold")
    return isinstance(probability, (int, float)) and isinstance(threshold, (int, float)) and probability >= threshold


def _guided_hint(diagnosis: Diagnosis, tiers: dict[str, TriageTier], vocab: Vocabulary) -> TriageTier | None:
    """The provider's hint, unless guidance explains an urgent hint away.

    An offline model says "urgent" whenever a malignant label is in its set; NICE NG12 refers a suspected
    basal cell carcinoma routinely. So an urgent hint whose malignant conditions all have a non-urgent pathway,
    with the melanoma flag down, is read as their tier. A hint nothing can be traced to stays as given.
    """
    hint = diagnosis.triage_hint
    if hint != "urgent" or _melanoma_flag(diagnosis):
        return hint
    malignant = [c for c in tiers if vocab.get(c).malignant]
    if not malignant or any(t == "urgent" for t in tiers.values()):
        return hint
    return max((tiers[c] for c in malignant), key=TRIAGE_ORDER.__getitem__)


def _likeliest_malignant(diagnosis: Diagnosis, vocab: Vocabulary) -> list[str]:
    """The malignant condition behind a provider's own "urgent" (e.g. melanoma over its sensitive threshold).

    Below the alert probability and outside the set, it is still why the user is told to see a clinician,
    so the answer should say so and explain it.
    """
    ranked = sorted(diagnosis.differential, key=lambda e: e.probability, reverse=True)
    return [e.condition_id for e in ranked if e.condition_id in vocab and vocab.get(e.condition_id).malignant][:1]


def escalate_for_second_opinion(triage: Triage, second: Diagnosis, vocab: Vocabulary) -> Triage:
    """Suspected malignancy from *any* model means "see a clinician", whichever model leads the turn.

    Only an urgent second opinion changes the tier: a second model that abstains or is unsure (the HAM
    classifier on a clinical photo, say) must not downgrade or blur the first model's answer.
    """
    if triage.tier == "urgent" or second.abstained:
        return triage
    other = decide_triage(second, vocab)
    if other.tier != "urgent":
        return triage
    return Triage(
        tier="urgent",
        drivers=other.drivers,
        reason=f"second opinion ({second.provider_id}): {other.reason} (lead model: {triage.reason})",
    )


RED_FLAG_REASON = "red-flag symptoms described by the user: "


def with_red_flags(triage: Triage | None, hits: list[RedFlagHit]) -> Triage | None:
    """Warning signs the user described make the turn urgent, whatever the photo (or no photo) says.

    Idempotent (the engine applies it wherever a tier is set); "now" signs also mark the tier as same-day.
    """
    if not hits:
        return triage
    same_day = any(h.urgency == "now" for h in hits)
    reason = RED_FLAG_REASON + ", ".join(dict.fromkeys(h.what for h in hits))
    if triage is not None and triage.tier == "urgent" and reason in triage.reason:
        return triage
    base = triage or Triage(tier="urgent", reason="")
    earlier = [part for part in base.reason.split("; ") if part and not part.startswith(RED_FLAG_REASON)]
    return base.model_copy(
        update={
            "tier": "urgent",
            "reason": "; ".join([*earlier, reason]),
            "same_day": same_day or base.same_day,
            "advice": None,  # a benign pathway's "no visit needed" no longer fits
        }
    )


def discount_confidence(diagnosis: Diagnosis, discount: float, reason: str) -> Diagnosis:
    """Flatten probabilities when the user continued with a poor photo; abstain when the photo is very poor.

    Probabilities are raised to the power ``discount`` and renormalised (a temperature of 1/discount), so
    the ranking is kept but certainty shrinks. The prediction set grows to keep its nominal coverage.
    """
    if discount >= 0.999 or not diagnosis.differential:
        return diagnosis
    out = diagnosis.model_copy(deep=True)
    _set_aside_provider_figures(out)
    if discount < 0.35:
        out.abstained = True
        out.abstain_reason = f"the photo quality is too low to judge ({reason})"
        out.notices.append(f"No likely conditions are given because the photo quality is too low ({reason}).")
        return out
    powered = [max(e.probability, 1e-12) ** discount for e in out.differential]
    total = sum(powered)
    for entry, value in zip(out.differential, powered):
        entry.probability = value / total
    target = out.coverage or 0.9
    ordered = sorted(out.differential, key=lambda e: e.probability, reverse=True)
    grown: list[str] = []
    cumulative = 0.0
    for entry in ordered:
        grown.append(entry.condition_id)
        cumulative += entry.probability
        if cumulative >= target:
            break
    out.prediction_set = list(dict.fromkeys([*out.prediction_set, *grown]))
    out.notices.append(f"Confidence was reduced because the photo quality is low ({reason}).")
    out.extra["quality_discount"] = discount
    return out


def _set_aside_provider_figures(diagnosis: Diagnosis) -> None:
    """Keep what the provider said before the discount, labelled as such, so nothing in the result is stale.

    The provider's ``extra`` figures, rationale and triage hint describe the undiscounted answer. They move
    under ``extra["before_quality_discount"]`` and the rationale says which answer it is about. A hint below
    "urgent" is dropped (it judged the narrower set); an "urgent" hint stays: a poor photo never clears a
    malignancy alarm.
    """
    before = {**diagnosis.extra, "triage_hint": diagnosis.triage_hint}
    diagnosis.extra = {"before_quality_discount": before}
    if diagnosis.rationale:
        diagnosis.rationale = f"Before the photo-quality discount: {diagnosis.rationale}"
    if diagnosis.triage_hint is not None and diagnosis.triage_hint != "urgent":
        diagnosis.triage_hint = None
        diagnosis.triage_reason = None


def asked_about_notices(result: TurnResult, vocab: Vocabulary) -> list[str]:
    """What the image model estimated for each condition the user's question names.

    Why: "could it be psoriasis?" got a cited text about psoriasis that read as if the photo had been checked
    for it, while the offline model only tells seven kinds of pigmented spot apart; and "could it be melanoma?"
    got general melanoma text without the model's own estimate for this photo.
    """
    diagnosis, explanation = result.diagnosis, result.explanation
    if diagnosis is None or explanation is None or diagnosis.abstained or not diagnosis.differential:
        return []
    estimates = {entry.condition_id: entry.probability for entry in diagnosis.differential}
    notices = []
    for condition_id in explanation.asked_about:
        if condition_id not in vocab:
            continue
        name = vocab.get(condition_id).patient_name
        if condition_id in estimates:
            share = estimates[condition_id]
            figure = "under 1%" if share < 0.005 else f"{share:.0%}"
            listed = " (it is in the list of likely conditions)" if condition_id in diagnosis.prediction_set else ""
            notices.append(
                f"You asked about {name}: the image model's estimate for it on this photo is "
                f"{figure}{listed}. An estimate from one photo, not a diagnosis."
            )
        else:
            notices.append(
                f"You asked about {name}: the image model does not assess it (it only weighs the "
                f"conditions it lists), so this photo has not been checked for it. A clinician can tell."
            )
    return notices


def required_notices(result: TurnResult, vocab: Vocabulary) -> list[str]:
    """Notices every answer carries; added last so nothing upstream can drop them."""
    notices = [NOT_A_DIAGNOSIS]
    flagged = redflags.notice(result.red_flags)
    if flagged:
        notices.append(flagged)
    if result.triage is not None and result.triage.tier == "urgent" and not flagged:  # that notice says it already
        notices.append(SEE_CLINICIAN_URGENT)
    elif (
        result.triage is not None
        and result.triage.tier == "routine"
        and result.diagnosis
        and any(c in vocab and vocab.get(c).malignant for c in result.diagnosis.prediction_set)
    ):
        notices.append(SEE_CLINICIAN_ROUTINE)
    urgent = result.triage is not None and result.triage.tier == "urgent"
    if (
        urgent
        and result.diagnosis
        and any(c in vocab and vocab.get(c).red_flag for c in result.diagnosis.prediction_set)
    ):
        notices.append(RED_FLAG_NOTICE)
    if result.diagnosis is not None and result.diagnosis.abstained:
        notices.append(ABSTAIN_NOTICE)
    if any(ref.synthetic for ref in result.references):
        notices.append(SYNTHETIC_NOTICE)
    return notices


def enforce(result: TurnResult, vocab: Vocabulary, triage_floor: Triage | None = None) -> None:
    """The policy applied last, on the result that leaves the engine (shown, returned, observed, stored).

    Plugins' hooks only get copies, and providers that ran after the diagnosis share its objects, so the tier
    the policy decided (``triage_floor``, kept apart) is restored if anything lowered it, and the required
    notices are added to whatever notices the result carries now.
    """
    if triage_floor is not None and (
        result.triage is None or TRIAGE_ORDER[result.triage.tier] < TRIAGE_ORDER[triage_floor.tier]
    ):
        result.triage = triage_floor.model_copy(deep=True)
    result.notices = list(dict.fromkeys([*(n for n in result.notices if n), *required_notices(result, vocab)]))


def at_least(triage: Triage, tier: TriageTier, reason: str, drivers: list[str] | None = None) -> Triage:
    """``triage`` raised to ``tier`` for ``reason`` (unchanged when it is already that high).

    Why: findings outside the diagnoser (what the photo's features show, a spot that grew since an earlier
    photo) may only ever raise the tier, never lower it.
    """
    if TRIAGE_ORDER[triage.tier] >= TRIAGE_ORDER[tier]:
        return triage
    return Triage(
        tier=tier,
        reason=f"{triage.reason}; {reason}" if triage.reason else reason,
        drivers=list(drivers or []) if tier == "urgent" else [],
    )
