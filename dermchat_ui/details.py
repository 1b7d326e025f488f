"""The optional details about the spot (age, sex, body site) as the chat and the API take them.

Both adapters turn their widget values into ``run_turn`` keywords the same way: blanks and "not given" are
left out, so the model only ever sees what the user chose to tell.
"""

from __future__ import annotations

from typing import Any

from dermchat.classifier.patient_info import normalise_sex

BODY_SITES = ["face", "scalp", "ear", "neck", "chest", "abdomen", "back", "upper extremity", "hand",
              "lower extremity", "foot", ("palm or sole", "acral"), "genital"]


def patient_details(age: float | None, sex: str | None, site: str | None) -> dict[str, Any]:
    """The optional details as ``run_turn`` keywords; blanks and 'not given' are left out."""
    return {"age": _years(age),
            "sex": normalise_sex(sex),
            "body_site": (site or "").strip() or None}


def _years(age: float | None) -> float | None:
    """Whole years stay whole, so a notice about an unusable age quotes what was typed ('500', not '500.0')."""
    if age in (None, ""):
        return None
    years = float(age)  # type: ignore[arg-type]
    return int(years) if years.is_integer() else years
