"""The learned lesion outline (tiny U-Net on HAM10000 expert masks): shipped weights, masks on real photos, the
classical fallback, and ``train-segmenter`` end to end with ``--resume``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from core_helpers import ham_expert_mask, ham_photo, without_segmenter_weights
from PIL import Image

from dermchat.morphology import describe
from dermchat.morphology import segmenter as seg
from dermchat.morphology.bench import validation_lesions
from dermchat.morphology.outline import classical_outline, lesion_outline
from dermchat.quality.bench import iou


@pytest.fixture(scope="module")
def held_out(ham_dir: Path) -> list[str]:
    """Validation lesions: the segmenter never trained on them, nor was its epoch chosen on them."""
    return [image_id for image_id, _dx in validation_lesions(ham_dir)[:30]]


def test_shipped_weights_load_through_the_default_segmenter() -> None:
    segmenter = seg.default_segmenter()
    assert segmenter is not None and segmenter.available
    assert segmenter.load() is segmenter.load()  # idempotent
    assert segmenter.info["config"]["base"] >= 4 and segmenter.info["figures"]["iou_median"] > 0.8
    assert (seg.WEIGHTS_DIR / "MODEL_CARD.md").is_file()
    assert (seg.WEIGHTS_DIR / seg.MODEL_FILE).stat().st_size < 20 * 2**20


def test_learned_outline_follows_the_expert_mask_better_than_the_classical_one(
    ham_dir: Path, held_out: list[str]
) -> None:
    learned, classical = [], []
    for image_id in held_out:
        rgb, truth = ham_photo(ham_dir, image_id), ham_expert_mask(ham_dir, image_id)
        learned.append(iou(truth, lesion_outline(rgb, "learned")))
        classical.append(iou(truth, classical_outline(rgb)))
    assert np.median(learned) >= 0.85
    assert np.mean(learned) > np.mean(classical)


def test_portrait_and_resized_photos_get_the_same_outline(ham_dir: Path, held_out: list[str]) -> None:
    """Portrait photos are transposed for the landscape network and the mask transposed back; a larger photo is
    measured at the network's size and the probability map scaled up, so both outlines match the original's."""
    rgb = ham_photo(ham_dir, held_out[0])
    mask = lesion_outline(rgb, "learned")
    portrait = lesion_outline(np.ascontiguousarray(np.rot90(rgb)), "learned")
    assert portrait.shape == (rgb.shape[1], rgb.shape[0])
    assert iou(np.rot90(mask), portrait) > 0.9
    big = np.asarray(Image.fromarray(rgb).resize((800, 600), Image.Resampling.BICUBIC))
    big_mask = lesion_outline(big, "learned")
    assert big_mask.shape == (600, 800)
    small_again = np.asarray(Image.fromarray(big_mask).resize((200, 150), Image.Resampling.NEAREST))
    assert iou(mask, small_again) > 0.9


def test_plain_skin_gives_no_spot() -> None:
    rng = np.random.default_rng(0)
    skin = np.clip(np.array([205, 160, 150]) + rng.normal(0, 3, (150, 200, 3)), 0, 255).astype(np.uint8)
    assert not lesion_outline(skin, "learned").any()
    assert not describe(skin, outline="learned").lesion_found


def test_without_weights_auto_falls_back_to_classical_and_learned_says_why(
    ham_dir: Path, held_out: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    without_segmenter_weights(monkeypatch, tmp_path)
    rgb = ham_photo(ham_dir, held_out[0])
    assert np.array_equal(lesion_outline(rgb), classical_outline(rgb))
    with pytest.raises(RuntimeError, match="could not be loaded"):
        lesion_outline(rgb, "learned")
    with pytest.raises(ValueError, match="unknown outline method"):
        lesion_outline(rgb, "magic")


def test_train_segmenter_runs_end_to_end_and_resumes(ham_dir: Path, tmp_path: Path) -> None:
    from dermchat.morphology.train_segmenter import main

    out = tmp_path / "run"
    common = ["--data", str(ham_dir), "--out", str(out), "--limit", "64", "--batch-size", "32", "--threads", "1"]
    assert main([*common, "--epochs", "1"]) == 0
    first = json.loads((out / "training_summary.json").read_text())
    assert [h["epoch"] for h in first["history"]] == [1]
    assert main([*common, "--epochs", "2", "--resume"]) == 0
    second = json.loads((out / "training_summary.json").read_text())
    assert [h["epoch"] for h in second["history"]] == [1, 2]
    assert second["history"][0] == first["history"][0]
    prob = seg.LesionSegmenter(out).probability(np.zeros((150, 200, 3), np.uint8))
    assert prob.shape == (150, 200) and 0 <= prob.min() <= prob.max() <= 1
    assert main([*common, "--epochs", "2", "--resume", "--lr", "0.1"]) == 2  # a different experiment is refused


@pytest.mark.parametrize("method", ["learned", "classical"])
def test_a_phone_size_photo_gets_the_same_descriptors_as_its_thumbnail(
    ham_dir: Path, held_out: list[str], method: str
) -> None:
    """The outline is drawn at a working size and scaled back, so 12 megapixels measure like 200x150 (they
    used to be outlined pixel by pixel: over a minute for the classical outline)."""
    rgb = ham_photo(ham_dir, held_out[1])
    big = np.asarray(Image.fromarray(rgb).resize((4000, 3000), Image.Resampling.BICUBIC))
    small, large = describe(rgb, outline=method), describe(big, outline=method)
    assert large.frame_size == (4000, 3000) and large.lesion_found
    assert abs(large.mask_area_share - small.mask_area_share) <= 0.03
    assert large.diameter_px == pytest.approx(20 * small.diameter_px, rel=0.08)
    assert set(large.colours) == set(small.colours)
