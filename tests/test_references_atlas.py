"""The image atlas: metadata resolution through the vocabulary, the on-disk feature cache, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from references_fixtures import build_atlas, ham_rows

from dermchat.references.atlas import (
    FEATURE_NAMES,
    AtlasError,
    clear_memory_cache,
    describe,
    load_atlas,
    site_group,
)


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("DERMCHAT_CACHE_DIR", str(cache))
    clear_memory_cache()
    yield cache
    clear_memory_cache()


def test_dx_is_resolved_through_the_vocabulary_and_bad_rows_are_counted(tmp_path: Path, ham_dir: Path) -> None:
    nv = ham_rows(ham_dir, "nv", 3)
    rows = [
        {"image_id": nv[0]["image_id"], "dx": "nv"},
        {"image_id": nv[1]["image_id"], "dx": "mole"},
        {"image_id": nv[2]["image_id"], "dx": "melanocytic_nevus"},
        {"image_id": ham_rows(ham_dir, "mel", 1)[0]["image_id"], "dx": "not a condition"},
    ]
    root = build_atlas(tmp_path / "atlas", ham_dir, rows)
    with open(root / "metadata.csv", "a") as handle:
        handle.write("ISIC_missing,nv\n")
    atlas = load_atlas(root)
    assert atlas.condition_ids.tolist() == ["melanocytic_nevus"] * 3
    assert atlas.skipped == {"unknown dx": 1, "image file missing": 1}
    assert atlas.features.shape == (3, len(FEATURE_NAMES))
    assert describe(atlas)["per_condition"] == {"melanocytic_nevus": 3}


def test_features_are_cached_on_disk_and_rebuilt_when_metadata_changes(
    tmp_path: Path, ham_dir: Path, private_cache: Path
) -> None:
    rows = [{"image_id": r["image_id"], "dx": r["dx"]} for r in ham_rows(ham_dir, "bkl", 4)]
    root = build_atlas(tmp_path / "atlas", ham_dir, rows)
    calls: list[tuple[int, int]] = []
    first = load_atlas(root, progress=lambda done, total: calls.append((done, total)))
    assert calls and calls[-1] == (4, 4)
    assert first.cache_path is not None and first.cache_path.parent == private_cache / "atlas"
    clear_memory_cache()
    calls.clear()
    second = load_atlas(root, progress=lambda done, total: calls.append((done, total)))
    assert calls == []  # read from the disk cache, nothing recomputed
    np.testing.assert_array_equal(first.features, second.features)
    (root / "metadata.csv").write_bytes((root / "metadata.csv").read_bytes())  # rewritten, same content: same key
    assert load_atlas(root) is second
    rows[0]["localization"] = "back"
    build_atlas(root, ham_dir, rows)
    third = load_atlas(root, progress=lambda done, total: calls.append((done, total)))
    assert calls and third.cache_path != second.cache_path
    assert third.sites[0] == "back"


def test_lesion_fraction_comes_from_the_mask_when_present(tmp_path: Path, ham_dir: Path) -> None:
    rows = [{"image_id": r["image_id"], "dx": "bcc"} for r in ham_rows(ham_dir, "bcc", 3)]
    with_masks = load_atlas(build_atlas(tmp_path / "a", ham_dir, rows))
    size = FEATURE_NAMES.index("lesion_fraction")
    from PIL import Image

    for i, image_id in enumerate(with_masks.image_ids):
        mask = np.asarray(Image.open(ham_dir / "masks" / f"{image_id}.png").convert("L")) > 127
        assert abs(with_masks.features[i, size] - mask.mean()) < 0.03
    without = load_atlas(build_atlas(tmp_path / "b", ham_dir, rows, masks=False))
    assert without.features[:, size].min() > 0  # estimated by the fallback segmenter instead


def test_not_an_atlas_is_explained(tmp_path: Path, ham_dir: Path) -> None:
    with pytest.raises(AtlasError, match="no image atlas"):
        load_atlas(tmp_path / "nowhere")
    (tmp_path / "half" / "images").mkdir(parents=True)
    with pytest.raises(AtlasError, match=r"metadata\.csv"):
        load_atlas(tmp_path / "half")
    root = build_atlas(
        tmp_path / "nodx", ham_dir, [{"image_id": ham_rows(ham_dir, "nv", 1)[0]["image_id"], "diagnosis": "nv"}]
    )
    with pytest.raises(AtlasError, match="no 'dx' column"):
        load_atlas(root)


@pytest.mark.parametrize(
    ("site", "group"),
    [
        ("upper extremity", "upper extremity"),
        ("Left forearm", "upper extremity"),
        ("cheek", "head and neck"),
        ("lower_extremity", "lower extremity"),
        ("sole", "acral"),
        ("unknown", ""),
        ("", ""),
    ],
)
def test_body_sites_group_into_regions(site: str, group: str) -> None:
    assert site_group(site) == group
