"""Builders shared by the core tests: an app wired to the fake plugins, and small test images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image

from dermchat.engine import DermChat
from dermchat.plugins import PluginManager
from dermchat.settings import Settings
from fake_plugins import FAKE_SETTINGS, FakePlugin


def fake_app(tmp_path: Path, plugins: list[tuple[object, str]] | None = None, **overrides: Any) -> DermChat:
    pm = PluginManager(load_entry_points=False)
    pm.register(FakePlugin(), "fakes")
    for plugin, name in plugins or []:
        pm.register(plugin, name)
    settings = Settings(**{**FAKE_SETTINGS, "workdir": str(tmp_path), **overrides})
    return DermChat(settings, pm)


def solid_image(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (64, 48), noise: bool = True) -> Path:
    img = Image.new("RGB", size, colour)
    if noise:  # a little texture so "uniform" checks don't fire
        px = img.load()
        for x in range(0, size[0], 3):
            px[x, size[1] // 2] = tuple(max(0, c - 20) for c in colour)
    img.save(path)
    return path
