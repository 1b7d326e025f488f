"""ham-exemplars: ranking by tone/site, no repeats across turns, files that stand alone, unavailability."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from references_fixtures import build_atlas, diagnosis, ham_rows, make_ctx

from dermchat.references.atlas import clear_memory_cache, load_atlas
from dermchat.references.exemplars import rank_candidates, user_features
from dermchat.references.skintone import FITZPATRICK_TYPES
from dermchat.request import TurnRequest
from plugins.exemplars import ExemplarProvider

DIFFERENTIAL = (("melanocytic_nevus", 0.6), ("melanoma", 0.3), ("benign_keratosis", 0.1))


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DERMCHAT_CACHE_DIR", str(tmp_path / "cache"))
    clear_memory_cache()
    yield
    clear_memory_cache()


@pytest.fixture()
def atlas_dir(tmp_path: Path, ham_dir: Path) -> Path:
    rows = [
        {"image_id": r["image_id"], "dx": r["dx"], "lesion_id": r["lesion_id"], "localization": r["localization"]}
        for dx, n in (("nv", 6), ("mel", 3), ("bkl", 3))
        for r in ham_rows(ham_dir, dx, n)
    ]
    return build_atlas(tmp_path / "atlas", ham_dir, rows)


@pytest.fixture()
def user_photo(ham_dir: Path) -> Image.Image:
    """A real nevus photo that is not in the tiny atlases."""
    row = ham_rows(ham_dir, "nv", 1, skip=20)[0]
    return Image.open(ham_dir / "images" / f"{row['image_id']}.jpg").convert("RGB")


def provider_for(atlas: Path, **options: object) -> ExemplarProvider:
    provider = ExemplarProvider()
    provider.configure({"atlas_dir": str(atlas), **options})
    return provider


def ranking_atlas(root: Path, ham_dir: Path, sites: list[str], tones: list[str]) -> Path:
    rows = [
        {"image_id": r["image_id"], "dx": "nv", "localization": site, "skin_tone": tone}
        for r, site, tone in zip(ham_rows(ham_dir, "nv", len(sites), skip=5), sites, tones)
    ]
    return build_atlas(root, ham_dir, rows)


def rank_by_site(
    root: Path, ham_dir: Path, user_photo: Image.Image, sites: list[str], body_site: str
) -> tuple[np.ndarray, np.ndarray]:
    """Atlas rows (one per site, same tone) ranked for a photo taken at `body_site`, with a strong site weight."""
    atlas = load_atlas(ranking_atlas(root, ham_dir, sites, [""] * len(sites)))
    provider = provider_for(atlas.root, site_weight=10.0)
    features, fitz, _ = user_features(user_photo, body_site)
    return rank_candidates(atlas, atlas.rows_for("melanocytic_nevus"), features, fitz, body_site, provider.opts)


@pytest.mark.parametrize(
    ("body_site", "expected"), [("back", 0), ("cheek", 1), ("left forearm", 3), ("lower_extremity", 2)]
)
def test_ranking_prefers_the_users_body_site(
    tmp_path: Path, ham_dir: Path, user_photo: Image.Image, body_site: str, expected: int
) -> None:
    sites = ["back", "face", "lower extremity", "upper extremity"]
    ranked, distances = rank_by_site(tmp_path / "a", ham_dir, user_photo, sites, body_site)
    assert ranked[0] == expected
    assert list(distances) == sorted(distances)


@pytest.mark.parametrize(("body_site", "expected"), [("left forearm", 2), ("Upper Extremity", 2), ("right palm", 0)])
def test_everyday_site_words_match_the_ham_site_they_name(
    tmp_path: Path, ham_dir: Path, user_photo: Image.Image, body_site: str, expected: int
) -> None:
    """'left forearm' is HAM's 'upper extremity' exactly, not merely a site in the same region as 'hand'."""
    ranked, _ = rank_by_site(
        tmp_path / "a", ham_dir, user_photo, ["acral", "hand", "upper extremity", "hand"], body_site
    )
    assert ranked[0] == expected


@pytest.mark.parametrize("matching_row", [1, 3])
def test_ranking_prefers_the_users_skin_tone(
    tmp_path: Path, ham_dir: Path, user_photo: Image.Image, matching_row: int
) -> None:
    features, fitz, _ = user_features(user_photo, None)
    far = "VI" if fitz <= 3 else "I"
    tones = [FITZPATRICK_TYPES[fitz - 1] if i == matching_row else far for i in range(4)]
    atlas = load_atlas(ranking_atlas(tmp_path / f"t{matching_row}", ham_dir, ["back"] * 4, tones))
    assert atlas.tone_from_metadata.all()
    provider = provider_for(atlas.root, tone_weight=5.0)
    ranked, _ = rank_candidates(atlas, atlas.rows_for("melanocytic_nevus"), features, fitz, None, provider.opts)
    assert ranked[0] == matching_row


def test_references_are_real_labelled_and_copied_into_the_turn_folder(
    atlas_dir: Path, user_photo: Image.Image, turn_workdir: Path
) -> None:
    provider = provider_for(atlas_dir)
    assert provider.available() == (True, "")
    progress: list[float | None] = []
    ctx = make_ctx(user_photo, turn_workdir, diagnosis(*DIFFERENTIAL), progress=lambda m, f=None: progress.append(f))
    refs = provider.references(ctx)
    assert [r.condition_id for r in refs] == ["melanocytic_nevus"] * 2 + ["melanoma"] * 2 + ["benign_keratosis"] * 2
    assert progress[-1] == pytest.approx(1.0)
    ids = [r.extra["image_id"] for r in refs]
    assert len(set(ids)) == 6 and set(ids) <= set(load_atlas(atlas_dir).image_ids)
    for ref in refs:
        path = Path(ref.path)
        assert path.is_file() and turn_workdir in path.parents and atlas_dir not in path.parents
        with Image.open(path) as img:
            assert img.format == "JPEG" and not img.getexif()
        assert ref.synthetic is False and ref.verified is None
        assert "real image" in ref.caption and "CC BY-NC 4.0" in ref.caption
        assert "Tschandl" in (ref.attribution or "") and ref.license == "CC BY-NC 4.0"
        assert ref.extra["image_id"] in ref.provenance
    assert refs[0].caption.startswith("Mole (melanocytic nevus)")


def test_clinician_captions_use_clinician_names(atlas_dir: Path, user_photo: Image.Image, turn_workdir: Path) -> None:
    ctx = make_ctx(user_photo, turn_workdir, diagnosis(*DIFFERENTIAL), audience="clinician")
    refs = provider_for(atlas_dir, k=1).references(ctx)
    assert refs[1].caption.startswith("Cutaneous melanoma — real image")


def test_never_the_same_image_twice_across_turns(atlas_dir: Path, user_photo: Image.Image, tmp_path: Path) -> None:
    provider = provider_for(atlas_dir)
    seen: set[str] = set()
    per_turn: list[list[str]] = []
    for turn in range(4):
        ctx = make_ctx(user_photo, tmp_path / f"turn{turn}", diagnosis(*DIFFERENTIAL), seen=seen)
        ids = [r.extra["image_id"] for r in provider.references(ctx)]
        assert not set(ids) & seen
        seen |= set(ids)
        per_turn.append(ids)
    assert [len(ids) for ids in per_turn] == [6, 4, 2, 0]  # 6 nevi, 3 melanomas, 3 keratoses in the atlas
    again = provider_for(atlas_dir, allow_repeats=True)
    ctx = make_ctx(user_photo, tmp_path / "repeat", diagnosis(*DIFFERENTIAL), seen=seen)
    assert [r.extra["image_id"] for r in again.references(ctx)] == per_turn[0]


def test_the_users_own_photo_is_not_offered_back(atlas_dir: Path, ham_dir: Path, turn_workdir: Path) -> None:
    atlas = load_atlas(atlas_dir)
    own_id = atlas.image_ids[int(atlas.rows_for("melanocytic_nevus")[0])]
    own = Image.open(ham_dir / "images" / f"{own_id}.jpg")
    ctx = make_ctx(own, turn_workdir, diagnosis(("melanocytic_nevus", 1.0)))
    ids = [r.extra["image_id"] for r in provider_for(atlas_dir, k=5).references(ctx)]
    assert len(ids) == 5 and own_id not in ids


def test_unavailable_without_an_atlas(tmp_path: Path) -> None:
    ok, reason = provider_for(tmp_path / "missing").available()
    assert not ok
    assert "no image atlas at" in reason and "DERMCHAT_DATA_DIR" in reason and "images/ and metadata.csv" in reason
    (tmp_path / "half" / "images").mkdir(parents=True)
    ok, reason = provider_for(tmp_path / "half").available()
    assert not ok and "metadata.csv" in reason


def test_a_full_turn_writes_exemplars_with_a_manifest(atlas_dir: Path, ham_dir: Path, tmp_path: Path) -> None:
    """Through the real engine (fake quality/diagnosis plugins) and ``dermchat turn --out``'s writer."""
    from core_helpers import fake_app

    import plugins.exemplars
    from dermchat.cli import write_turn_files

    app = fake_app(
        tmp_path,
        plugins=[(plugins.exemplars, "exemplars")],
        references=["ham-exemplars"],
        options={"ham-exemplars": {"atlas_dir": str(atlas_dir)}},
    )
    image = ham_dir / "images" / f"{ham_rows(ham_dir, 'nv', 1, skip=20)[0]['image_id']}.jpg"
    result = app.run_turn_sync(TurnRequest(image=image, audience="patient", force=True))
    assert result.status == "ok", result.errors
    assert result.references and all(r.provider_id == "ham-exemplars" for r in result.references)
    out = tmp_path / "out"
    write_turn_files(result, out)
    manifest = json.loads((out / "references.json").read_text())
    assert [m["extra"]["image_id"] for m in manifest] == [r.extra["image_id"] for r in result.references]
    assert all(
        Path(m["path"]).parent == out and Path(m["path"]).is_file() and m["synthetic"] is False for m in manifest
    )
