"""A likely condition the atlas has no real photos of is named in a notice, never left as a silent gap."""

from __future__ import annotations

from pathlib import Path

import pytest
from references_fixtures import build_atlas, diagnosis, ham_rows

from dermchat.references.atlas import clear_memory_cache
from dermchat.results import ProviderRef, Reference, TurnResult
from plugins import exemplars as plugin
from plugins.exemplars import ExemplarProvider


@pytest.fixture()
def loaded_provider(tmp_path: Path, ham_dir: Path, monkeypatch: pytest.MonkeyPatch) -> ExemplarProvider:
    """The plugin's own registered provider, loaded on a tiny atlas of moles and melanomas only."""
    monkeypatch.setenv("DERMCHAT_CACHE_DIR", str(tmp_path / "cache"))
    clear_memory_cache()
    rows = [
        {"image_id": r["image_id"], "dx": r["dx"], "lesion_id": r["lesion_id"], "localization": r["localization"]}
        for dx in ("nv", "mel")
        for r in ham_rows(ham_dir, dx, 2)
    ]
    atlas = build_atlas(tmp_path / "atlas", ham_dir, rows)
    registered: list[ExemplarProvider] = []
    plugin.register_reference_generators(register=registered.append)
    provider = registered[0]
    provider.configure({"atlas_dir": str(atlas)})
    provider.load()
    yield provider
    clear_memory_cache()


def _result(*pairs: tuple[str, float], shown: tuple[str, ...], ran: bool = True) -> TurnResult:
    refs = [
        Reference(
            path=f"/tmp/{c}.jpg",
            condition_id=c,
            caption=c,
            provenance="test",
            synthetic=False,
            provider_id=ExemplarProvider.id,
        )
        for c in shown
    ]
    providers = {"references": [ProviderRef(id=ExemplarProvider.id, version="1")]} if ran else {}
    return TurnResult(turn_id="t", diagnosis=diagnosis(*pairs), references=refs, providers=providers)


def test_a_top_condition_without_atlas_photos_is_named(loaded_provider: ExemplarProvider) -> None:
    result = _result(
        ("psoriasis", 0.5), ("melanocytic_nevus", 0.3), ("atopic_eczema", 0.2), shown=("melanocytic_nevus",)
    )
    notices = plugin.extra_notices(result=result, audience="patient")
    assert notices and len(notices) == 1, notices
    assert "Psoriasis" in notices[0] and "eczema" in notices[0].lower(), notices
    assert "mole" not in notices[0].lower()  # covered, and shown: not named


def test_no_notice_when_every_condition_is_covered_or_references_did_not_run(
    loaded_provider: ExemplarProvider,
) -> None:
    covered = _result(("melanocytic_nevus", 0.7), ("melanoma", 0.3), shown=("melanocytic_nevus", "melanoma"))
    assert not plugin.extra_notices(result=covered, audience="patient")
    # An atlas condition that found no unseen picture this turn is not 'missing from the library'.
    exhausted = _result(("melanocytic_nevus", 0.7), ("melanoma", 0.3), shown=("melanocytic_nevus",))
    assert not plugin.extra_notices(result=exhausted, audience="patient")
    not_run = _result(("psoriasis", 1.0), shown=(), ran=False)
    assert not plugin.extra_notices(result=not_run, audience="patient")


def _exemplar(condition_id: str, user_type: str, skin_type: str, source: str) -> Reference:
    return Reference(
        path=f"/tmp/{condition_id}.jpg",
        condition_id=condition_id,
        caption=condition_id,
        provenance="test",
        synthetic=False,
        provider_id=ExemplarProvider.id,
        extra={"user_skin_type": user_type, "skin_type": skin_type, "skin_type_source": source},
    )


def test_darker_skin_is_told_the_examples_are_of_lighter_skin() -> None:
    """HAM10000 has no recorded skin types; an ITA estimate of 'VI' on a dermoscopic picture is no match."""
    ran = {"references": [ProviderRef(id=ExemplarProvider.id, version="1")]}
    dx = diagnosis(("melanocytic_nevus", 1.0))
    estimated = [_exemplar("melanocytic_nevus", "VI", "VI", "estimated (ITA)")]
    result = TurnResult(turn_id="t", diagnosis=dx, references=estimated, providers=ran)
    assert plugin.TONE_NOTICE in (plugin.extra_notices(result=result, audience="patient") or [])
    recorded = [_exemplar("melanocytic_nevus", "VI", "V", "metadata")]
    result = TurnResult(turn_id="t", diagnosis=dx, references=recorded, providers=ran)
    assert plugin.TONE_NOTICE not in (plugin.extra_notices(result=result, audience="patient") or [])
    lighter = [_exemplar("melanocytic_nevus", "II", "II", "estimated (ITA)")]
    result = TurnResult(turn_id="t", diagnosis=dx, references=lighter, providers=ran)
    assert plugin.TONE_NOTICE not in (plugin.extra_notices(result=result, audience="patient") or [])
