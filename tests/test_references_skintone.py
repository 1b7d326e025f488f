"""Skin tone (ITA -> Fitzpatrick-like type) on colour patches of known ITA, and the lesion mask fallback."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.color import lab2rgb

from dermchat.references.colour import lab_to_rgb, rgb_to_lab
from dermchat.references.skintone import (
    estimate_skin_tone,
    fallback_lesion_mask,
    ita_category,
    ita_degrees,
    parse_fitzpatrick,
)


def lab_patch(lightness: float, a: float, b: float, shape: tuple[int, int] = (48, 64)) -> np.ndarray:
    """An sRGB patch of one Lab colour, converted by scikit-image (independent of our own conversion)."""
    lab = np.tile(np.array([lightness, a, b], dtype=np.float64), (*shape, 1))
    return np.round(lab2rgb(lab) * 255).astype(np.uint8)


def lightness_for(ita: float, b: float = 15.0) -> float:
    return 50 + b * math.tan(math.radians(ita))


@pytest.mark.parametrize(
    ("ita", "category", "fitzpatrick"),
    [
        (62, "very light", "I"),
        (48, "light", "II"),
        (34, "intermediate", "III"),
        (19, "tan", "IV"),
        (-10, "brown", "V"),
        (-45, "dark", "VI"),
    ],
)
def test_known_ita_patches_land_in_their_band(ita: float, category: str, fitzpatrick: str) -> None:
    patch = lab_patch(lightness_for(ita), 8.0, 15.0)
    tone = estimate_skin_tone(patch, mask=np.zeros(patch.shape[:2], dtype=bool))
    assert tone is not None
    assert abs(tone.ita - ita) < 1.5
    assert (tone.category, tone.fitzpatrick) == (category, fitzpatrick)


def test_lesion_pixels_do_not_change_the_skin_tone() -> None:
    """A large dark lesion on tan skin: the fallback mask finds it and ITA stays the skin's, while the median
    over the whole image (no mask) would land in a much darker band."""
    skin = lab_patch(lightness_for(19), 8.0, 15.0, (96, 128)).copy()
    skin[13:83, 14:114] = lab_patch(22.0, 12.0, 10.0, (70, 100))
    mask = fallback_lesion_mask(skin)
    assert mask[48, 64] and not mask[3, 3]
    assert abs(mask.mean() - 70 * 100 / (96 * 128)) < 0.05
    tone = estimate_skin_tone(skin)
    assert tone is not None and tone.category == "tan" and abs(tone.ita - 19) < 1.5
    lab = rgb_to_lab(skin).reshape(-1, 3)
    naive = float(ita_degrees(np.median(lab[:, 0]), np.median(lab[:, 2])))
    assert ita_category(naive)[0] == "dark"


def test_band_edges_and_formula() -> None:
    assert ita_degrees(50, 20) == pytest.approx(0.0)
    assert ita_degrees(70, 20) == pytest.approx(45.0)
    assert ita_category(55.0) == ("light", "II") and ita_category(55.01) == ("very light", "I")
    assert ita_category(-30.0) == ("dark", "VI") and ita_category(-29.9) == ("brown", "V")


def test_colour_conversion_matches_scikit_image() -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(20, 20, 3), dtype=np.uint8)
    from skimage.color import rgb2lab

    assert np.abs(rgb_to_lab(rgb) - rgb2lab(rgb)).max() < 0.05
    assert np.abs(lab_to_rgb(rgb_to_lab(rgb)).astype(int) - rgb).max() <= 1


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("III", 3),
        ("type 5", 5),
        ("FST2", 2),
        ("6", 6),
        ("tan", 4),
        ("35°", 3),
        ("ITA -40", 6),
        ("unknown", None),
        ("", None),
        ("purple", None),
    ],
)
def test_skin_tone_column_values(cell: str, expected: int | None) -> None:
    assert parse_fitzpatrick(cell) == expected


def test_too_little_skin_gives_none_and_bad_shape_is_explained() -> None:
    patch = lab_patch(60, 8, 15, (10, 10))
    assert estimate_skin_tone(patch, mask=np.ones((10, 10), dtype=bool)) is None
    with pytest.raises(ValueError, match="RGB"):
        estimate_skin_tone(np.zeros((10, 10), dtype=np.uint8))
