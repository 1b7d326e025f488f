"""Tie what the photo shows to the knowledge base's ABCDE passage, with its citation.

Why: the morphology step says what is visible in *this* photo (an uneven shape, an abrupt edge, several
colours); the explanation then cites the knowledge base's own ABCDE checklist (``melanoma.md``, "How it looks",
written in our words with source URLs), so a reader sees which checklist items the photo touches and where the
checklist comes from. Nothing is added when the descriptors show none of A, B or C, when no spot was found,
or when the KB has no such passage.
"""

from __future__ import annotations

from typing import Any

from dermchat.knowledge.kb import KnowledgeBase, Statement
from dermchat.morphology.describe import stolz_asymmetry
from dermchat.results import Citation, Explanation

ABCDE_CONDITION = "melanoma"
ABCDE_SECTION = "how_it_looks"

# Which statements of the passage to quote, per audience: the patients' ABCDE checklist, the clinicians'
# ABCD-style description (and its dermoscopy sentence when the photo shows a blue-white veil).
_QUOTE_WORDS: dict[str, tuple[str, ...]] = {"patient": ("ABCDE",), "clinician": ("Asymmetric",)}
_VEIL_WORDS = ("blue-white veil",)

MANY_COLOURS = 3
"""Colours from which C counts as shown ("several shades" in the checklist)."""

ABRUPT_BORDER = 4.0
"""Border score (0-8) from which B counts as shown (an edge that stops sharply along half of it)."""


def shown_features(descriptors: dict[str, Any] | None, audience: str) -> list[str]:
    """The ABCDE items the descriptors show, in the reader's words (empty when none or no spot was found)."""
    if not descriptors or not descriptors.get("lesion_found", True):
        return []
    clinician = audience == "clinician"
    out = []
    if stolz_asymmetry(descriptors) >= 1:
        out.append(f"asymmetry (A {stolz_asymmetry(descriptors)})" if clinician else "an uneven shape (A)")
    if descriptors.get("border", 0) >= ABRUPT_BORDER:
        out.append(
            f"an abrupt border (B {descriptors['border']:.1f}/8)"
            if clinician
            else "an edge that stops sharply in places (B)"
        )
    colours = descriptors.get("colours") or []
    if len(colours) >= MANY_COLOURS:
        out.append(f"{len(colours)} colours (C: {', '.join(colours)})" if clinician else f"{len(colours)} colours (C)")
    return out


def _quoted(kb: KnowledgeBase, audience: str, veil: bool) -> list[Statement]:
    if ABCDE_CONDITION not in kb:
        return []
    words = _QUOTE_WORDS["clinician" if audience == "clinician" else "patient"]
    if veil and audience == "clinician":
        words = words + _VEIL_WORDS
    passages = kb.get(ABCDE_CONDITION).section(ABCDE_SECTION, "clinician" if audience == "clinician" else "patient")
    return [s for p in passages for s in p.statements if any(w in s.text for w in words)]


def cite_abcde(
    explanation: Explanation, descriptors: dict[str, Any] | None, kb: KnowledgeBase, audience: str
) -> Explanation:
    """``explanation`` with a paragraph naming the ABCDE items the photo shows and quoting the KB's checklist,
    cited with the passage's sources (an existing marker is reused for a page already cited)."""
    features = shown_features(descriptors, audience)
    statements = _quoted(kb, audience, bool(descriptors and descriptors.get("blue_white_veil"))) if features else []
    if not statements:
        return explanation
    citations = list(explanation.citations)
    by_url = {c.url: c.marker for c in citations}
    sentences = []
    for statement in statements:
        markers = []
        for source_id in statement.source_ids:
            source = kb.source(ABCDE_CONDITION, source_id)
            if source.url not in by_url:
                by_url[source.url] = f"[{len(citations) + 1}]"
                citations.append(
                    Citation(
                        marker=by_url[source.url],
                        source_id=source_id,
                        title=source.title,
                        url=source.url,
                        condition_id=ABCDE_CONDITION,
                        section=ABCDE_SECTION,
                    )
                )
            markers.append(by_url[source.url])
        sentences.append(f"{statement.text} {''.join(markers)}".strip())
    lead = "The photo's description shows " if audience == "clinician" else "In this photo the spot shows "
    paragraph = f"{lead}{'; '.join(features)}: items of the ABCDE check. {' '.join(sentences)}"
    text = f"{explanation.text}\n\n{paragraph}" if explanation.text else paragraph
    return explanation.model_copy(
        update={"text": text, "citations": citations, "extra": {**explanation.extra, "abcde_cited": True}}
    )
