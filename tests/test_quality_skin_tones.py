"""Darker skin is judged fairly: a well-lit photo of darker skin is not 'too dark', 'not skin' or badly framed.

HAM10000 is almost all light skin, so the photos are re-rendered at Monk Skin Tone (MST) swatch colours: in
CIELAB the skin's lightness is scaled to the swatch and its chroma moved to the swatch's, with the lesion's
contrast to the skin scaled alike (darker skin shows lesions with less absolute contrast). The same photo
darkened far below any skin tone must still be called too dark.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from core_helpers import ham_arrays

from dermchat.quality.assess import assess_array
from dermchat.quality.distortions import darken
from dermchat.results import QualityReason, QualityReport

# Monk Skin Tone scale swatches (Google, CC BY 4.0), sRGB: the darker half of the scale.
MONK_SWATCHES: dict[str, tuple[int, int, int]] = {
    "MST6": (160, 126, 86),
    "MST7": (130, 92, 67),
    "MST8": (96, 65, 52),
    "MST9": (58, 49, 42),
    "MST10": (41, 36, 32),
}
IMAGE_IDS = ("ISIC_0025261", "ISIC_0028088", "ISIC_0027909")  # the last: a lesion filling the frame


def render_skin_tone(rgb8: np.ndarray, swatch: tuple[int, int, int]) -> np.ndarray:
    """The photo as if the skin had the swatch colour under the same light (see module docstring)."""
    import cv2

    lab = cv2.cvtColor(rgb8.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
    target = cv2.cvtColor(np.array([[swatch]], np.float32) / 255.0, cv2.COLOR_RGB2LAB)[0, 0]
    skin_l = float(np.percentile(lab[..., 0], 75))
    skin_a, skin_b = float(np.median(lab[..., 1])), float(np.median(lab[..., 2]))
    k = float(target[0]) / skin_l
    out = np.empty_like(lab)
    out[..., 0] = lab[..., 0] * k
    out[..., 1] = (lab[..., 1] - skin_a) * k + target[1]
    out[..., 2] = (lab[..., 2] - skin_b) * k + target[2]
    rgb = cv2.cvtColor(out, cv2.COLOR_LAB2RGB)
    return np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def photos(ham_dir: Path) -> dict[str, np.ndarray]:
    return ham_arrays(ham_dir, IMAGE_IDS)


def _reason(report: QualityReport, reason_id: str) -> QualityReason:
    return next(r for r in report.reasons if r.id == reason_id)


@pytest.mark.parametrize("tone", sorted(MONK_SWATCHES))
def test_darker_skin_is_not_called_too_dark_or_not_skin(tone: str, photos: dict[str, np.ndarray]) -> None:
    for image_id, rgb in photos.items():
        report = assess_array(render_skin_tone(rgb, MONK_SWATCHES[tone]))
        assert report.is_skin, (image_id, tone, report.notes)
        assert not _reason(report, "underexposed").problem, (image_id, tone, _reason(report, "underexposed"))
        assert not _reason(report, "not_skin").problem, (image_id, tone)
        assert not _reason(report, "framing").problem, (image_id, tone, _reason(report, "framing"))


@pytest.mark.parametrize("tone", ["MST7", "MST8"])
def test_well_lit_darker_skin_passes_the_gate(tone: str, photos: dict[str, np.ndarray]) -> None:
    for image_id, rgb in photos.items():
        report = assess_array(render_skin_tone(rgb, MONK_SWATCHES[tone]))
        assert report.acceptable, (image_id, tone, report.score, report.problems())


def test_a_photo_darker_than_any_skin_is_still_too_dark(photos: dict[str, np.ndarray]) -> None:
    for image_id, rgb in photos.items():
        report = assess_array(darken(rgb, 0.08))
        assert report.is_skin and not report.acceptable, (image_id, report.notes)
        assert "underexposed" in [r.id for r in report.problems(2)], (image_id, report.problems())


def test_a_failed_photo_always_names_what_to_fix(photos: dict[str, np.ndarray]) -> None:
    """Several moderate defects can fail a photo together (the score is a product); the patient must still
    be told the worst one, or the retake message carries no tip at all."""
    report = assess_array(darken(photos["ISIC_0028088"], 0.15))
    assert not report.acceptable and report.is_skin
    assert not any(r.score < 50 for r in report.reasons)  # no reason fails alone: the case this covers
    worst = report.problems()
    assert [r.id for r in worst] == ["underexposed"], worst
    assert worst[0].patient_tip
