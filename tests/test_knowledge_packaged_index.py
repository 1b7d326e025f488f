"""The prebuilt KB index shipped in the package: current with the KB, and used on a fresh machine."""

from __future__ import annotations

from pathlib import Path

import pytest

from dermchat.knowledge import index as kb_index
from dermchat.knowledge.kb import get_kb


def test_packaged_index_matches_the_knowledge_base() -> None:
    import numpy as np

    with np.load(kb_index.PACKAGED_INDEX, allow_pickle=False) as data:
        key = str(data["key"])
    assert key == kb_index.cache_key(get_kb()), (
        "dermchat/data/kb_index.npz is stale: run `python -m dermchat.knowledge.index` after editing the KB"
    )


def test_fresh_machine_uses_the_packaged_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DERMCHAT_CACHE_DIR", str(tmp_path))
    built = kb_index.build_index(get_kb())
    assert built.build.from_cache and len(built) > 100
    assert not list((tmp_path / "kb-index").glob("*.npz"))  # nothing had to be embedded or written
