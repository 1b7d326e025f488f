"""Benchmark figures say what they measured: an atlas build time read from the cache is not this run's."""

from __future__ import annotations

from pathlib import Path

from references_fixtures import build_atlas, ham_rows

from dermchat.references.atlas import clear_memory_cache, load_atlas
from dermchat.references.bench import feature_cache_figures


def test_feature_cache_build_time_is_labelled_by_where_it_came_from(tmp_path: Path, ham_dir: Path) -> None:
    root = build_atlas(tmp_path / "atlas", ham_dir, ham_rows(ham_dir, "nv", 3) + ham_rows(ham_dir, "mel", 3))
    cache = tmp_path / "cache"
    clear_memory_cache()
    built = load_atlas(root, cache_root=cache, workers=1)
    assert built.built_in_this_process and built.built_at
    assert set(feature_cache_figures(built)) == {"feature_cache_build_s"}  # measured in this process
    clear_memory_cache()  # a new process: the features come from the cache file
    cached = load_atlas(root, cache_root=cache, workers=1)
    assert not cached.built_in_this_process and cached.built_at == built.built_at
    figures = feature_cache_figures(cached)
    assert "feature_cache_build_s" not in figures
    assert figures == {
        "feature_cache_build_s_when_built": round(built.build_seconds or 0.0, 1),
        "feature_cache_built_at": built.built_at,
    }
    clear_memory_cache()
