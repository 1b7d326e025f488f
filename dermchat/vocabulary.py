"""The shared condition vocabulary every plugin maps its labels into.

A VLM that says "nevus", the CNN that says ``nv`` and the knowledge base file ``melanocytic_nevus.md`` must
all land on the same row; this module is that meeting point.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from dermchat.paths import DATA_PACKAGE_DIR

VOCABULARY_FILE = DATA_PACKAGE_DIR / "conditions.yaml"


@dataclass(frozen=True)
class Condition:
    """One condition: stable id, audience-specific names, and the flags safety rules depend on."""

    id: str
    patient_name: str
    clinician_name: str
    icd10: str | None = None
    ham_code: str | None = None
    malignant: bool = False
    red_flag: bool = False
    synonyms: tuple[str, ...] = field(default_factory=tuple)

    def name(self, audience: str) -> str:
        """The display name for ``audience`` ('patient' or 'clinician')."""
        return self.clinician_name if audience == "clinician" else self.patient_name


def normalise_label(text: str) -> str:
    """Lower-case, drop punctuation and collapse spaces so 'Basal-cell  Carcinoma.' matches 'basal cell carcinoma'."""
    text = text.lower().replace("_", " ").replace("-", " ").replace("’", "'")
    text = re.sub(r"[^a-z0-9' ]+", " ", text)
    return re.sub(r"\s+", " ", text).strip()


class Vocabulary:
    """Lookup by id, HAM code, display name or synonym."""

    def __init__(self, conditions: list[Condition]) -> None:
        self._by_id = {c.id: c for c in conditions}
        self._lookup: dict[str, str] = {}
        for cond in conditions:
            keys = [cond.id, cond.patient_name, cond.clinician_name, *cond.synonyms]
            if cond.ham_code:
                keys.append(cond.ham_code)
            for key in keys:
                self._lookup.setdefault(normalise_label(key), cond.id)
            # Names like "Mole (melanocytic nevus)": the part before and inside the brackets also count.
            for name in (cond.patient_name, cond.clinician_name):
                for part in re.split(r"[()/]", name):
                    if normalise_label(part):
                        self._lookup.setdefault(normalise_label(part), cond.id)

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, condition_id: object) -> bool:
        return condition_id in self._by_id

    def __iter__(self) -> Iterator[Condition]:
        return iter(self._by_id.values())

    def ids(self) -> list[str]:
        return list(self._by_id)

    def get(self, condition_id: str) -> Condition:
        """The condition with this exact id; ``KeyError`` names the unknown id."""
        try:
            return self._by_id[condition_id]
        except KeyError:
            raise KeyError(f"unknown condition id {condition_id!r}") from None

    def resolve(self, text: str) -> str | None:
        """Map a free-text label (id, HAM code, name, synonym) onto a condition id, or ``None``."""
        key = normalise_label(text)
        if not key:
            return None
        if key in self._lookup:
            return self._lookup[key]
        # Tolerate plurals and trailing qualifiers ("melanoma, likely" / "warts").
        for candidate in (key.rstrip("s"), key.split(" likely")[0], key.split(" possible")[0]):
            if candidate in self._lookup:
                return self._lookup[candidate]
        return None

    def from_ham_code(self, code: str) -> str:
        for cond in self._by_id.values():
            if cond.ham_code == code:
                return cond.id
        raise KeyError(f"no condition with HAM code {code!r}")

    def all_names(self) -> dict[str, list[str]]:
        """Every label that resolves to each id (for embedding-based matching of free text)."""
        names: dict[str, list[str]] = {cid: [] for cid in self._by_id}
        for label, cid in self._lookup.items():
            names[cid].append(label)
        return names


def load_vocabulary(path: Path = VOCABULARY_FILE) -> Vocabulary:
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    conditions = [
        Condition(
            id=item["id"],
            patient_name=item["patient"],
            clinician_name=item["clinician"],
            icd10=item.get("icd10"),
            ham_code=item.get("ham_code"),
            malignant=bool(item.get("malignant", False)),
            red_flag=bool(item.get("red_flag", False)),
            synonyms=tuple(item.get("synonyms", [])),
        )
        for item in raw["conditions"]
    ]
    return Vocabulary(conditions)


@functools.cache
def get_vocabulary() -> Vocabulary:
    """The packaged vocabulary, parsed once per process."""
    return load_vocabulary()
