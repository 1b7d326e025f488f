"""Do the observations agree with the conclusion? (DermoGPT's observation-diagnosis consistency, offline.)

When the image model's top condition is benign but the photo's own descriptors are high-risk, one of the two
is wrong, and the safe reading is the worrying one: the turn says that they disagree, melanoma joins the set
of likely conditions and the tier becomes at least "see a doctor". High-risk means any of

* a TDS-style score above ``CHECK_TDS`` (5.0, between the score's "highly suspicious" cut-off 4.6 and its top),
* a blue-white veil covering at least ``CHECK_VEIL_SHARE`` (15%) of the lesion (one of the most specific
  melanoma features, Argenziano 2003),
* ``HIGH_RISK_COLOURS`` (5) or more of the six dermoscopic colours.

Why not any veil and 4 colours (the first version): with these automated descriptors that rule fired on 11% of
benign lesions and raised the benign urgent rate by 9 points (validation lesions, ham-cnn 2.0). The veil share
and colour count were chosen on the classifier's *calibration* lesions (947, one image each; 77 melanomas), with
the TDS cut-off searched from 5.45 upwards: the rule that added the most melanomas at argmax while keeping the
benign urgent rate's rise under 3.5 points. When the TDS-style score replaced Stolz's weights (and the learned
outline the classical one), the TDS cut-off was searched again on the same calibration lesions, from 4.6 up: 4.6
gave +20.7 points of melanoma sensitivity at argmax for +5.3 points of benign urgent rate, **5.0 gave +14.2 for
+3.0** (kept), 5.4 +9.1 for +1.8; ``bench-morphology`` reports the effect on the validation lesions.

A top condition that is already malignant, an abstention, or a photo in which no spot was found leave nothing
to disagree with.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from dermchat.morphology.describe import Morphology

if TYPE_CHECKING:
    from dermchat.results import Diagnosis, TriageTier
    from dermchat.vocabulary import Vocabulary

CHECK_TDS = 5.0
"""TDS-style score above which the descriptors count as high-risk for the check (searched on calibration lesions)."""
CHECK_VEIL_SHARE = 0.15
"""Blue-white veil share of the lesion above which the check fires (the descriptor's flag starts at 10%)."""
HIGH_RISK_COLOURS = 5
WIDEN_WITH = ("melanoma",)
"""What the set gains when the check fires: the ABCD rule is a melanoma rule."""
MIN_TIER: TriageTier = "urgent"
"""The tier a disagreement leads to: the patient view's "Please see a doctor soon"."""


@dataclass(frozen=True)
class Consistency:
    """The outcome of the check: whether it fired, which features disagreed and what it added to the set."""

    disagrees: bool
    features: list[str] = field(default_factory=list)
    top_condition: str | None = None
    added_to_set: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def high_risk_features(morphology: Morphology) -> list[str]:
    """The descriptors that point towards melanoma, each as a short clinician-readable phrase."""
    if not morphology.lesion_found:
        return []
    out = []
    if morphology.tds > CHECK_TDS:
        out.append(f"TDS {morphology.tds:.2f} > {CHECK_TDS}")
    if morphology.blue_white_veil and morphology.veil_share >= CHECK_VEIL_SHARE:
        out.append(f"blue-white veil ({morphology.veil_share:.0%} of the lesion)")
    if len(morphology.colours) >= HIGH_RISK_COLOURS:
        out.append(f"{len(morphology.colours)} colours ({', '.join(morphology.colours)})")
    return out


def check_consistency(morphology: Morphology, diagnosis: Diagnosis | None, vocab: Vocabulary) -> Consistency:
    """Compare the descriptors with the diagnosis' top condition (nothing fires without a benign top)."""
    if diagnosis is None or diagnosis.abstained or not diagnosis.differential:
        return Consistency(False)
    top = diagnosis.top(1)[0].condition_id
    if top not in vocab or vocab.get(top).malignant:
        return Consistency(False, top_condition=top)
    features = high_risk_features(morphology)
    if not features:
        return Consistency(False, top_condition=top)
    added = [c for c in WIDEN_WITH if c in vocab and c not in diagnosis.prediction_set]
    return Consistency(True, features, top, added)


def widened(diagnosis: Diagnosis, consistency: Consistency) -> Diagnosis:
    """The diagnosis with the check's conditions added to its prediction set (a copy; unchanged if none)."""
    if not consistency.added_to_set:
        return diagnosis
    out = diagnosis.model_copy(deep=True)
    out.prediction_set = list(dict.fromkeys([*out.prediction_set, *consistency.added_to_set]))
    return out
