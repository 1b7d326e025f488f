"""Issue 19 items 2 and 5 end to end: the real quality check and the offline ``ham-cnn`` on the abstention set
(non-dermoscopic and degraded photos built from real HAM10000 images and scikit-image's samples)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from PIL import Image

from dermchat.abstention_eval import (
    CANT_ASSESS,
    _as_png,
    darkened,
    drawn_spot,
    ham_sample,
    phone_framed,
    skimage_pictures,
    summarise,
)
from dermchat.render import render
from dermchat.request import TurnRequest

if TYPE_CHECKING:  # the engine is imported by the fixture, after the torch check
    from dermchat.engine import DermChat
    from dermchat.results import TurnResult

pytest.importorskip("torch", reason="the offline classifier needs torch")
OVERRIDES = {"explainer": None, "references": [], "second_opinion": None}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> DermChat:  # the real app, default offline profile
    from dermchat.engine import DermChat
    from dermchat.settings import load_settings

    settings = load_settings().model_copy(update={"workdir": str(tmp_path_factory.mktemp("turns"))})
    chat = DermChat(settings)
    if not chat.provider("diagnoser", "ham-cnn") or not chat.provider("diagnoser", "ham-cnn").available()[0]:
        pytest.skip("ham-cnn weights are not available")
    return chat


def _turn(app: DermChat, img: Image.Image) -> TurnResult:
    return app.run_turn_sync(TurnRequest(image=_as_png(img), question="", force=True, settings_overrides=OVERRIDES))


@pytest.mark.parametrize("name", ["drawn_spot", "face_crop", "cat", "coffee"])
def test_ordinary_pictures_get_cant_assess_never_a_confident_answer(app: DermChat, name: str) -> None:
    # A drawn dark spot on plain skin came back "Mole 96%, probably harmless".
    img = drawn_spot(0) if name == "drawn_spot" else skimage_pictures()[name]
    result = _turn(app, img)
    assert result.status in CANT_ASSESS, (result.status, result.triage)
    if result.status == "abstained":
        assert result.triage.tier in ("cant_assess", "urgent")
        text = render(result, "patient")
        assert "can't be assessed" in text.lower() and "likely one of" not in text


def test_a_darkened_or_phone_framed_melanoma_never_comes_out_calmer(app: DermChat, ham_dir: Path) -> None:
    rows = []
    for image_id, dx, path in [s for s in ham_sample(ham_dir, 6) if s[1] == "mel"]:
        with Image.open(path) as im:
            clean = im.convert("RGB")
        for group, img in (
            ("ham_clean", clean),
            ("ham_darkened", darkened(clean)),
            ("ham_phone_framed", phone_framed(clean)),
        ):
            result = _turn(app, img)
            rows.append(
                {
                    "group": group,
                    "name": image_id,
                    "dx": dx,
                    "status": result.status,
                    "tier": result.triage.tier if result.triage else None,
                    "dermoscopic": result.quality.dermoscopic if result.quality else None,
                }
            )
    report = summarise(rows)
    assert report["melanoma_degraded_calmer_than_original"] == [], rows
    assert report["groups"]["ham_clean"]["judged_not_dermoscopic"] == 0
    assert report["groups"]["ham_phone_framed"]["confident_answer"] == 0, rows
