"""The contrast-view data: top differentials side by side, real vs synthetic marked, KB features attached."""

from __future__ import annotations

import json
from pathlib import Path

from references_fixtures import diagnosis

from dermchat.references import SYNTHETIC_LABEL
from dermchat.references.gallery import REAL_BADGE, SYNTHETIC_BADGE, build_gallery
from dermchat.results import Reference, TurnResult


def ref(condition_id: str, synthetic: bool, verified: bool | None = None, **extra: object) -> Reference:
    return Reference(
        path=f"/tmp/{condition_id}-{synthetic}.png",
        condition_id=condition_id,
        caption=f"{condition_id} — {SYNTHETIC_LABEL if synthetic else 'real image'}",
        provenance="test",
        synthetic=synthetic,
        provider_id="sd-diffusion" if synthetic else "ham-exemplars",
        verified=verified,
        extra=dict(extra),
    )


def result_with_references() -> TurnResult:
    dx = diagnosis(("melanoma", 0.5), ("melanocytic_nevus", 0.3), ("benign_keratosis", 0.15), ("dermatofibroma", 0.05))
    return TurnResult(
        turn_id="t",
        audience="patient",
        diagnosis=dx,
        references=[
            ref("melanoma", True, True),
            ref("melanoma", False, image_id="ISIC_1"),
            ref("melanocytic_nevus", True, None, verification_notice="This illustration was not checked: no model."),
            ref("dermatofibroma", False, image_id="ISIC_9"),
        ],
        hidden_references=[ref("benign_keratosis", True, False)],
    )


def test_columns_follow_the_differential_and_mark_real_and_synthetic(tmp_path: Path) -> None:
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "melanoma.md").write_text(
        "---\nsources:\n  - {id: s1, title: Source one, url: 'https://example.org/1'}\n---\n"
        "## How it looks\n### For patients\n- Several colours. [s1]\n- Uneven edge.\n- Changes over time.\n- Fourth.\n"
        "### For clinicians\nAtypical network.\n"
    )
    gallery = build_gallery(result_with_references(), kb_dir=kb)
    assert [c.condition_id for c in gallery.columns] == ["melanoma", "melanocytic_nevus", "benign_keratosis"]
    melanoma = gallery.columns[0]
    assert melanoma.name == "Melanoma (a serious skin cancer)" and melanoma.malignant and melanoma.in_prediction_set
    assert melanoma.features == ["Several colours.", "Uneven edge.", "Changes over time."]
    assert [s.url for s in melanoma.sources] == ["https://example.org/1"]
    assert [(i.kind, i.badge) for i in melanoma.items] == [("real", REAL_BADGE), ("synthetic", SYNTHETIC_BADGE)]
    assert melanoma.items[0].image_id == "ISIC_1"
    nevus = gallery.columns[1].items[0]
    assert nevus.verified is None and "not checked" in (nevus.verification_note or "")
    keratosis = gallery.columns[2]
    assert keratosis.items == [] and keratosis.hidden == 1
    assert any("hidden" in n for n in gallery.notes) and any("not photos of you" in n for n in gallery.notes)
    # The legend names each badge once ("Synthetic illustration: synthetic — an illustration" said it twice).
    assert "illustration: synthetic" not in gallery.legend.lower() and "not your photo" in gallery.legend
    json.loads(gallery.model_dump_json())  # plain data for the UI


def test_clinician_view_and_empty_cases(tmp_path: Path) -> None:
    result = result_with_references()
    clinician = build_gallery(result, audience="clinician", kb_dir=tmp_path)
    assert clinician.columns[0].name == "Cutaneous melanoma" and clinician.columns[0].features == []
    result.diagnosis.abstained = True  # type: ignore[union-attr]
    assert build_gallery(result).columns == []
    assert build_gallery(TurnResult(turn_id="x")).empty


def test_packaged_knowledge_base_feeds_the_gallery() -> None:
    gallery = build_gallery(result_with_references())
    assert all(col.features for col in gallery.columns), [c.condition_id for c in gallery.columns if not c.features]
    assert all(s.url.startswith("https://") for col in gallery.columns for s in col.sources)
