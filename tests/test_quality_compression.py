"""JPEG compression is judged at the photo's full resolution, so phone-size photos are checked too.

The analysis copy of a phone photo is shrunk to 320 px, which hides the 8x8 block grid: a visibly blocky
800x600 or 1600x1200 JPEG used to pass. Real HAM10000 photos are upscaled with a smooth filter (like a phone
photo of the same skin) and re-saved at a given JPEG quality. Rates over many photos and qualities are the
benchmark's job (python -m dermchat bench-quality); these tests pin the behaviour on one photo.
"""

from __future__ import annotations

import io
import itertools
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dermchat.quality import tips
from dermchat.quality.assess import COMPRESSION_SHRUNK, RAMPS, assess_array, assess_image, compression_ramp
from dermchat.quality.imageprep import COMPRESSION_CROP_SIDE, compression_crop
from dermchat.quality.measures import blockiness
from dermchat.results import QualityReason, QualityReport

PHOTO_ID = "ISIC_0025261"  # a clean, acceptable HAM10000 photo (see test_quality_checks.CLEAN_IDS)
PHONE_SIZES = ((800, 600), (1600, 1200))


def phone_photo(ham_dir: Path, size: tuple[int, int], quality: int) -> Image.Image:
    """The HAM photo upscaled to ``size`` (bicubic), saved as JPEG at ``quality`` and decoded again."""
    with Image.open(ham_dir / "images" / f"{PHOTO_ID}.jpg") as im:
        big = im.convert("RGB").resize(size, Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    big.save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    with Image.open(buf) as decoded:
        return decoded.convert("RGB")


def compression(report: QualityReport) -> QualityReason:
    return next(r for r in report.reasons if r.id == "compression")


@pytest.mark.parametrize("size", PHONE_SIZES)
def test_phone_size_photo_at_quality_5_is_refused_with_the_compression_advice(
    ham_dir: Path, size: tuple[int, int]
) -> None:
    report = assess_image(phone_photo(ham_dir, size, 5))
    assert not report.acceptable, (size, report.score)
    worst = report.problems(1)
    assert worst and worst[0].id == "compression", (size, [(r.id, r.score) for r in report.reasons])
    assert worst[0].patient_tip == tips.patient_tip("compression")
    assert compression(report).value > COMPRESSION_SHRUNK.limit


@pytest.mark.parametrize("size", PHONE_SIZES)
def test_same_photo_at_quality_90_passes_with_full_compression_marks(ham_dir: Path, size: tuple[int, int]) -> None:
    report = assess_image(phone_photo(ham_dir, size, 90))
    assert report.acceptable, (size, report.score, report.problems())
    assert compression(report).score == 100.0, (size, compression(report).value)


def test_compression_score_falls_with_jpeg_quality_on_a_phone_size_photo(ham_dir: Path) -> None:
    scores = [compression(assess_image(phone_photo(ham_dir, (800, 600), q))).score for q in (90, 50, 20, 5)]
    assert all(b <= a for a, b in itertools.pairwise(scores)), scores
    assert scores[0] == 100.0 and scores[-1] < 50.0, scores


def test_blocks_flattened_completely_still_read_as_a_grid() -> None:
    """Quality 3-5 flattens whole blocks: the steps inside them are zero and used to hide the grid (0.0)."""
    rng = np.random.default_rng(0)
    levels = rng.uniform(0.4, 0.6, size=(16, 16)).astype(np.float32)
    flat_blocks = np.kron(levels, np.ones((8, 8), np.float32))
    assert blockiness(flat_blocks) > COMPRESSION_SHRUNK.bad
    assert blockiness(np.full((128, 128), 0.5, np.float32)) == 0.0  # a uniform frame has no grid at all


def test_compression_crop_is_a_centre_crop_at_full_resolution() -> None:
    arr = np.zeros((3000, 4000, 3), np.uint8)
    arr[1500, 2000] = 255
    crop = compression_crop(Image.fromarray(arr))
    assert crop.shape == (COMPRESSION_CROP_SIDE, COMPRESSION_CROP_SIDE, 3)
    assert crop.max() == 255  # the centre pixel is inside, unscaled
    small = compression_crop(Image.new("L", (200, 150), 90))
    assert small.shape == (150, 200, 3)  # a small photo is used whole, converted to RGB
    with pytest.raises(ValueError, match="full-resolution crop"):
        assess_array(np.zeros((150, 200, 3), np.uint8), full_crop=np.zeros((10, 10), np.uint8))


def test_compression_limit_moves_smoothly_from_own_size_to_shrunk_photos() -> None:
    """A photo analysed at its own size keeps the stricter HAM10000 ramp; a phone photo shrunk 2x or more gets
    the ramp calibrated at full resolution; in between the limit moves without a jump."""
    from types import SimpleNamespace

    def limit(long_side: int) -> float:
        analysed = min(long_side, 320)
        m = SimpleNamespace(original_size=(long_side, long_side * 3 // 4), analysed_size=(analysed, analysed * 3 // 4))
        return compression_ramp(m).limit  # type: ignore[arg-type]

    limits = [limit(side) for side in (200, 320, 400, 480, 560, 640, 800, 4032)]
    assert limits[0] == limits[1] == RAMPS["compression"].limit
    assert limits[-1] == limits[-2] == limits[-3] == COMPRESSION_SHRUNK.limit
    assert all(b >= a for a, b in itertools.pairwise(limits)), limits
    assert max(b - a for a, b in itertools.pairwise(limits)) < 0.5 * (COMPRESSION_SHRUNK.limit - limits[0]), limits
