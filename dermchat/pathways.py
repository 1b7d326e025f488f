"""Triage tier per condition, NICE NG12 / CKS style, from ``dermchat/data/triage_pathways.yaml``.

Why: every malignant label used to mean "URGENT - within about two weeks", so a basal cell carcinoma (NICE NG12:
routine referral) and benign lesions caught by it were sent down the suspected-cancer pathway, while the reason
given was a model figure, not the guidance. Each vocabulary condition now has a tier, the pathway in clinician
words, the reason in plain words and a source URL; ``safety.decide_triage`` takes the highest tier among the
conditions that remain possible, and never less than the safety rules require.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import yaml

from dermchat.paths import DATA_PACKAGE_DIR

PATHWAYS_FILE = DATA_PACKAGE_DIR / "triage_pathways.yaml"
GuidanceTier = Literal["reassure", "routine", "urgent"]
"""The tiers guidance can give; `cant_assess` belongs to the photo, never to a condition."""
TIERS: tuple[GuidanceTier, ...] = get_args(GuidanceTier)


@dataclass(frozen=True)
class Pathway:
    condition_id: str
    tier: GuidanceTier
    pathway: str
    reason: str
    source: str


def load_pathways(path: Path = PATHWAYS_FILE) -> dict[str, Pathway]:
    """Pathways by condition id; a wrong tier or a missing source URL is an error naming the condition."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    out: dict[str, Pathway] = {}
    for item in raw["pathways"]:
        entry = Pathway(
            condition_id=item["id"],
            tier=item["tier"],
            pathway=item["pathway"],
            reason=item["reason"],
            source=item["source"],
        )
        if entry.tier not in TIERS:
            raise ValueError(f"{path}: {entry.condition_id}: tier {entry.tier!r} is not one of {TIERS}")
        if not entry.source.startswith("https://"):
            raise ValueError(f"{path}: {entry.condition_id}: source must be an https URL")
        out[entry.condition_id] = entry
    return out


@functools.cache
def get_pathways() -> dict[str, Pathway]:
    """The packaged pathways, parsed once per process."""
    return load_pathways()


def pathway_for(condition_id: str) -> Pathway | None:
    return get_pathways().get(condition_id)
