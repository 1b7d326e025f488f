"""The explanation cites the knowledge base's ABCDE passage when the photo's description shows A, B or C."""

from __future__ import annotations

from dermchat.knowledge.abcde import cite_abcde, shown_features
from dermchat.knowledge.kb import get_kb
from dermchat.results import Citation, Explanation

UNEVEN = {
    "lesion_found": True,
    "asymmetry": 2,
    "border": 2.0,
    "colours": ["light brown", "dark brown", "blue-grey"],
    "blue_white_veil": True,
}
CALM = {"lesion_found": True, "asymmetry": 0, "border": 1.0, "colours": ["light brown"], "blue_white_veil": False}


def _explanation(citations: list[Citation] | None = None) -> Explanation:
    return Explanation(
        provider_id="kb-rag",
        text="Moles are common. [1]",
        citations=citations
        or [Citation(marker="[1]", source_id="aad-moles", title="Moles", url="https://example.org/moles")],
    )


def test_patients_get_the_abcde_checklist_cited_when_the_spot_is_uneven_with_several_colours() -> None:
    out = cite_abcde(_explanation(), UNEVEN, get_kb(), "patient")
    assert out.text.startswith("Moles are common. [1]")
    assert "an uneven shape (A)" in out.text and "3 colours (C)" in out.text and "ABCDE check:" in out.text
    new = out.citations[1:]
    assert new and all(c.condition_id == "melanoma" and c.section == "how_it_looks" and c.url for c in new)
    assert all(c.marker in out.text for c in new) and out.extra["abcde_cited"]


def test_clinicians_get_the_dermoscopy_sentence_when_there_is_a_veil_and_markers_are_not_repeated() -> None:
    kb = get_kb()
    url = kb.source("melanoma", "dermnet-melanoma").url
    already = _explanation([Citation(marker="[1]", source_id="dermnet-melanoma", title="Melanoma", url=url)])
    out = cite_abcde(already, UNEVEN, kb, "clinician")
    assert "asymmetry (A 2)" in out.text and "blue-white veil" in out.text
    assert [c.url for c in out.citations].count(url) == 1 and out.text.count("[1]") >= 2


def test_nothing_is_added_for_a_calm_spot_no_spot_or_no_description() -> None:
    kb = get_kb()
    for descriptors in (CALM, {**UNEVEN, "lesion_found": False}, None):
        assert cite_abcde(_explanation(), descriptors, kb, "patient") == _explanation()
    assert shown_features(CALM, "patient") == []
