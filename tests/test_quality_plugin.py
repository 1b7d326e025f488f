"""The `classic-quality` provider: registration, options, and the quality gate in a real turn."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from core_helpers import fake_app
from PIL import Image

from dermchat.engine import DermChat
from dermchat.plugin_manager import PluginManager
from dermchat.quality.distortions import gaussian_blur
from dermchat.request import TurnRequest
from plugins import quality as quality_plugin
from plugins.quality import ClassicQualityChecker


def test_plugin_registers_provider_and_benchmark() -> None:
    pm = PluginManager(load_entry_points=False)
    pm.register(quality_plugin, "quality")
    listing = pm.listing()
    ids = [p["id"] for p in listing["providers"]["quality"]]
    assert "classic-quality" in ids
    assert "classic-quality" in listing["benchmarks"]


def test_options_are_validated() -> None:
    provider = ClassicQualityChecker()
    provider.configure({"threshold": 70, "max_side": 256})
    assert provider.options.threshold == 70  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="threshold"):
        provider.configure({"threshold": 150})
    with pytest.raises(ValueError):
        provider.configure({"no_such_option": 1})


def _app(tmp_path: Path) -> DermChat:
    return fake_app(tmp_path, plugins=[(quality_plugin, "quality")], quality="classic-quality")


def test_gate_asks_for_a_retake_then_continues_with_a_discount(tmp_path: Path, ham_image: Path) -> None:
    with Image.open(ham_image) as im:
        rgb = np.asarray(im.convert("RGB"))
    blurred = tmp_path / "blurred.png"
    Image.fromarray(gaussian_blur(rgb, 2.2)).save(blurred)
    app = _app(tmp_path)
    first = app.run_turn_sync(TurnRequest(image=str(blurred), question="what is this?"))
    assert first.status == "retake", first.message
    assert first.quality is not None and not first.quality.acceptable
    assert first.quality.problems(1)[0].id == "focus"
    assert first.diagnosis is None
    forced = app.run_turn_sync(TurnRequest(image=str(blurred), question="what is this?", force=True))
    assert forced.quality_overridden and forced.diagnosis is not None
    assert forced.quality is not None and forced.quality.discount < 1.0

    clean = app.run_turn_sync(TurnRequest(image=str(ham_image), question="what is this?"))
    assert clean.status != "retake" and clean.quality is not None and clean.quality.acceptable


def test_not_skin_stops_the_turn(tmp_path: Path) -> None:
    data = pytest.importorskip("skimage.data")
    page = tmp_path / "rocket.png"  # a colour photo (a black-and-white one is refused earlier, at intake)
    Image.fromarray(data.rocket()).convert("RGB").save(page)
    result = _app(tmp_path).run_turn_sync(TurnRequest(image=str(page), question="what is this?"))
    assert result.status == "not_skin"
    assert result.diagnosis is None
