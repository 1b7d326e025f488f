"""The quality check on real HAM10000 photos: each reason fires on its defect and stays quiet otherwise,
scores fall with severity, odd inputs are handled, non-skin is flagged, and results are deterministic."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from core_helpers import ham_arrays
from PIL import Image

from dermchat.quality.assess import assess_array, assess_image
from dermchat.quality.distortions import DISTORTIONS
from dermchat.results import QualityReason, QualityReport

# Real photos that are clean and acceptable (in focus, evenly lit, lesion centred). Rates over hundreds of
# images (how often each reason is named) are the benchmark's job: python -m dermchat bench-quality.
CLEAN_IDS = ("ISIC_0025261", "ISIC_0028088")
SEED = 1  # picks the random parts of a distortion (noise, motion direction, cast hue, shift direction)
MONOTONE_DISTORTIONS = (
    "gaussian_blur",
    "motion_blur",
    "noise",
    "darken",
    "brighten",
    "jpeg",
    "downscale",
    "colour_cast",
    "glare",
)


@pytest.fixture(scope="module")
def clean_images(ham_dir: Path) -> dict[str, np.ndarray]:
    return ham_arrays(ham_dir, CLEAN_IDS)


@pytest.fixture(scope="module")
def clean_reports(clean_images: dict[str, np.ndarray]) -> dict[str, QualityReport]:
    return {k: assess_array(v) for k, v in clean_images.items()}


def reason(report: QualityReport, reason_id: str) -> QualityReason:
    return next(r for r in report.reasons if r.id == reason_id)


def test_clean_photos_are_acceptable_skin_with_no_problem(clean_reports: dict[str, QualityReport]) -> None:
    for image_id, report in clean_reports.items():
        assert report.is_skin, image_id
        assert report.acceptable and report.score >= 60, (image_id, report.score, report.problems())
        assert report.problems() == [], (image_id, report.problems())
        assert report.discount == 1.0
        assert report.lesion_fraction and 0.01 < report.lesion_fraction < 0.9
        x0, y0, x1, y1 = report.lesion_bbox  # type: ignore[misc]
        assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1
        assert {r.id for r in report.reasons} >= {
            "focus",
            "underexposed",
            "overexposed",
            "glare",
            "noise",
            "color_cast",
            "low_resolution",
            "framing",
            "not_skin",
        }


@pytest.mark.parametrize("name", sorted(DISTORTIONS))
def test_each_reason_fires_on_its_distortion(
    name: str, clean_images: dict[str, np.ndarray], clean_reports: dict[str, QualityReport]
) -> None:
    dist = DISTORTIONS[name]
    for image_id, rgb in clean_images.items():
        clean = clean_reports[image_id]
        assert not reason(clean, dist.expected_reason).problem, (image_id, name)
        report = assess_array(dist.apply(rgb, dist.moderate, SEED))
        worst = report.problems(1)
        assert worst and worst[0].id == dist.expected_reason, (image_id, name, report.problems())
        assert report.score < clean.score
        assert worst[0].patient_tip and worst[0].clinician_detail


def test_motion_blur_is_named_in_the_clinician_detail(clean_images: dict[str, np.ndarray]) -> None:
    rgb = clean_images[CLEAN_IDS[0]]
    report = assess_array(DISTORTIONS["motion_blur"].apply(rgb, 13, SEED))
    assert "motion blur" in reason(report, "focus").clinician_detail
    blurred = assess_array(DISTORTIONS["gaussian_blur"].apply(rgb, 2.2, 0))
    assert "motion blur" not in reason(blurred, "focus").clinician_detail


@pytest.mark.parametrize("name", MONOTONE_DISTORTIONS)
def test_score_never_rises_with_severity(
    name: str, clean_images: dict[str, np.ndarray], clean_reports: dict[str, QualityReport]
) -> None:
    dist = DISTORTIONS[name]
    image_id = CLEAN_IDS[0]
    rgb = clean_images[image_id]
    scores = [clean_reports[image_id].score]
    scores += [assess_array(dist.apply(rgb, level, SEED)).score for level in dist.severities]
    assert all(b <= a + 1e-6 for a, b in itertools.pairwise(scores)), (name, scores)
    assert scores[-1] < 30, (name, scores)


def test_huge_photo_is_measured_on_a_reduced_copy(clean_images: dict[str, np.ndarray]) -> None:
    big = Image.fromarray(clean_images[CLEAN_IDS[0]]).resize((4000, 3000), Image.Resampling.BILINEAR)
    report = assess_image(big)
    assert max(report.analysed_size) <= 512  # type: ignore[arg-type]
    assert report.is_skin and report.acceptable, report.problems()
    assert not reason(report, "low_resolution").problem


def test_tiny_grey_black_and_white_images_are_handled() -> None:
    tiny = assess_image(Image.new("RGB", (16, 16), (200, 150, 130)))
    assert not tiny.acceptable and reason(tiny, "low_resolution").problem
    assert tiny.analysed_size == (16, 16)
    speck = assess_image(Image.new("RGB", (3, 2), (200, 150, 130)))
    assert not speck.acceptable and speck.reasons[0].id == "low_resolution"
    grey = assess_image(Image.new("RGB", (200, 150), (128, 128, 128)))
    assert not grey.is_skin and not grey.acceptable and grey.discount == 0.0
    black = assess_image(Image.new("RGB", (200, 150), (0, 0, 0)))
    assert not black.acceptable and reason(black, "underexposed").problem
    white = assess_image(Image.new("RGB", (200, 150), (255, 255, 255)))
    assert not white.acceptable and reason(white, "overexposed").problem
    greyscale_mode = assess_image(Image.new("L", (120, 90), 90))
    assert not greyscale_mode.is_skin


@pytest.mark.parametrize("name", ["text", "page", "brick", "grass", "rocket"])
def test_non_skin_photos_are_flagged(name: str) -> None:
    """A document, a brick wall, grass and a rocket launch (scikit-image's bundled sample photos)."""
    data = pytest.importorskip("skimage.data")
    arr = getattr(data, name)()
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    report = assess_image(Image.fromarray(arr))
    assert not report.is_skin, (name, report.skin_fraction)
    assert not report.acceptable and report.discount == 0.0
    assert reason(report, "not_skin").problem


def test_uniform_walls_are_not_skin() -> None:
    for colour in [(225, 200, 170), (90, 120, 170)]:  # a beige wall, a blue wall
        report = assess_image(Image.new("RGB", (400, 300), colour))
        assert not report.is_skin, colour


def test_results_are_deterministic(clean_images: dict[str, np.ndarray]) -> None:
    rgb = DISTORTIONS["noise"].apply(clean_images[CLEAN_IDS[1]], 0.035, 3)
    first = assess_array(rgb).model_dump()
    second = assess_array(rgb.copy()).model_dump()
    assert first == second


def test_threshold_sets_the_gate_and_the_discount(clean_images: dict[str, np.ndarray]) -> None:
    rgb = DISTORTIONS["gaussian_blur"].apply(clean_images[CLEAN_IDS[0]], 1.0, 0)
    lenient = assess_array(rgb, threshold=5)
    strict = assess_array(rgb, threshold=99)
    assert lenient.score == strict.score
    assert lenient.acceptable and lenient.discount == 1.0
    assert not strict.acceptable and 0.4 <= strict.discount < 1.0
    assert strict.band in {"poor", "fair", "good", "excellent"}


def test_framing_value_weighs_offset_over_cut_and_forgives_frame_filling_lesions() -> None:
    from dermchat.quality.assess import RAMPS, framing_value

    centred = framing_value(0.05, 0.0, 0.2)
    corner = framing_value(0.5, 0.3, 0.2)
    assert centred < RAMPS["framing"].limit < corner
    # monotone in offset and cut; an offset costs more than the same amount of one-sided cut (edge leaks)
    assert framing_value(0.3, 0.0, 0.2) > framing_value(0.2, 0.0, 0.2)
    assert framing_value(0.2, 0.4, 0.2) > framing_value(0.2, 0.0, 0.2)
    assert framing_value(0.4, 0.0, 0.2) > framing_value(0.0, 0.4, 0.2)
    # the same placement is judged more leniently when the lesion fills the frame
    assert framing_value(0.4, 0.3, 0.9) < framing_value(0.4, 0.3, 0.1)
    assert RAMPS["framing"].score(framing_value(0.4, 0.3, 0.9)) >= 50.0


@pytest.mark.parametrize("peak", [238.0, 255.0])
def test_glare_needs_a_clipped_centre(
    peak: float, clean_images: dict[str, np.ndarray], clean_reports: dict[str, QualityReport]
) -> None:
    """Near-white but unclipped spots (pale structures, a white veil) are not reflections; clipped ones are."""
    image_id = CLEAN_IDS[0]
    rgb = clean_images[image_id].astype(np.float32)
    alpha = DISTORTIONS["glare"].apply(np.zeros_like(clean_images[image_id]), 0.01, SEED)[..., :1] / 255.0
    spotted = np.clip(np.round(rgb * (1 - alpha) + peak * alpha), 0, 255).astype(np.uint8)
    report = assess_array(spotted)
    if peak >= 255:
        assert reason(report, "glare").problem, report.problems()
    else:
        assert reason(report, "glare").score == reason(clean_reports[image_id], "glare").score


def test_brisque_speaks_for_focus_only_when_noise_and_compression_are_quiet(
    clean_images: dict[str, np.ndarray],
) -> None:
    """A high BRISQUE adds to the focus value of a clean-looking photo, but not of a noisy or blocky one (there
    the noise / compression reasons explain it, and naming 'focus' would give the wrong retake tip)."""
    from dermchat.quality.assess import brisque_blur
    from dermchat.quality.measures import measure

    rgb = clean_images[CLEAN_IDS[0]]
    size = (rgb.shape[1], rgb.shape[0])
    clean, _ = measure(rgb, size)
    assert brisque_blur(clean, None) == 0.0
    assert brisque_blur(clean, 30.0) == 0.0  # as natural as a clean HAM photo
    assert brisque_blur(clean, 80.0) > brisque_blur(clean, 60.0) > 0.0
    for name, level in (("noise", 0.05), ("jpeg", 8)):
        degraded = DISTORTIONS[name].apply(rgb, level, SEED)
        m, _ = measure(degraded, size)
        assert brisque_blur(m, 80.0) == 0.0, name
