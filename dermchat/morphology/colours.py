"""The six dermoscopic colours (Stolz's ABCD rule) named from CIELAB pixels, after lighting is taken out.

Why relative to the skin: the same spot photographed under a warmer or brighter lamp must keep its colour
names (the "compare with an earlier photo" check depends on it), and dermoscopists name colours against the
surrounding skin anyway. Each channel is scaled so the skin right around the lesion matches a reference skin
colour (the median skin of HAM10000 photos), which removes any brightness change or colour cast that scales the
channels, before the pixels are named.

The rules are boxes in CIELAB (L* 0-100, a* red+, b* yellow+) relative to the skin ring's colour, set on
HAM10000 training-split photos:

* black: very dark (L* < 22);
* white: lighter than the skin (L* + 4) and nearly colourless (chroma < 15): regression, scar-like areas;
* blue-grey: darker than the skin and bluer (b* 5 below the skin's) or colourless (chroma < 8): the Tyndall
  colour of deep melanin, regression, the veil;
* red: redder than the skin (a* + 16) without turning yellow (b* < 0.6 a*), not dark: vessels, blood;
* dark brown / light brown: the remaining pixels darker than the skin, split at L* 45.

Pixels that match no rule (e.g. skin-coloured parts inside the mask) are left unnamed; a colour is *present*
when it covers at least ``MIN_SHARE`` of the lesion.
"""

from __future__ import annotations

import numpy as np

COLOURS: tuple[str, ...] = ("white", "red", "light brown", "dark brown", "blue-grey", "black")
"""Stolz's six colours, in the order reports list them."""

MIN_SHARE = 0.05
"""Share of the lesion a colour must cover to count as present (smaller specks are within naming noise)."""

REFERENCE_SKIN_RGB = np.array([208.0, 162.0, 172.0], dtype=np.float32)
"""Median RGB of the skin around HAM10000 lesions (300 training-split photos): what the skin ring is scaled to."""

REFERENCE_SKIN_LAB = np.array([71.0, 18.5, 1.4], dtype=np.float32)
"""CIELAB of ``REFERENCE_SKIN_RGB``: the skin assumed when a lesion fills the frame."""

VEIL_MIN_SHARE = 0.10
"""Blue-white veil: bluish-whitish pixels ("ground glass") covering at least this share of the lesion."""


def normalise_to_skin(rgb: np.ndarray, skin: np.ndarray) -> np.ndarray:
    """Float RGB in [0, 255] with each channel scaled so the median of ``skin`` pixels is the reference skin.

    With fewer than 20 skin pixels (a lesion filling the frame) the photo is returned unscaled: there is
    nothing to be relative to, and the colour names then rest on the camera's own balance.
    """
    out = rgb.astype(np.float32)
    if int(skin.sum()) < 20:
        return out
    median = np.median(out[skin], axis=0)
    gain = REFERENCE_SKIN_RGB / np.maximum(median, 8.0)
    return np.asarray(np.clip(out * gain, 0, 255), dtype=np.float32)


def to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB of float RGB in [0, 255] (L* 0-100)."""
    import cv2

    return cv2.cvtColor((rgb / 255.0).astype(np.float32), cv2.COLOR_RGB2LAB)


def name_pixels(lab: np.ndarray, skin: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean map per colour name, relative to the skin's CIELAB colour ``skin`` (the maps do not overlap)."""
    lightness, a, b = lab[..., 0], lab[..., 1], lab[..., 2]
    skin_l, skin_a, skin_b = (float(v) for v in skin)
    chroma = np.hypot(a, b)
    black = lightness < 22
    white = ~black & (lightness > skin_l + 4) & (chroma < 15)
    darker = lightness < skin_l - 8
    blue = ~black & ~white & darker & ((b < skin_b - 5) | (chroma < 8))
    rest = ~black & ~white & ~blue
    red = rest & (a > skin_a + 16) & (b < 0.6 * a) & (lightness >= 30)
    warm = rest & ~red & darker
    return {
        "white": white,
        "red": red,
        "light brown": warm & (lightness >= 45),
        "dark brown": warm & (lightness < 45),
        "blue-grey": blue,
        "black": black,
    }


def colour_shares(lab: np.ndarray, lesion: np.ndarray, skin: np.ndarray) -> dict[str, float]:
    """Share of the lesion's pixels named with each colour (in ``COLOURS`` order)."""
    area = max(int(lesion.sum()), 1)
    named = name_pixels(lab, skin)
    return {name: float((named[name] & lesion).sum() / area) for name in COLOURS}


def present(shares: dict[str, float], min_share: float = MIN_SHARE) -> list[str]:
    """The colours covering at least ``min_share`` of the lesion, in ``COLOURS`` order."""
    return [name for name in COLOURS if shares.get(name, 0.0) >= min_share]


def veil_share(lab: np.ndarray, lesion: np.ndarray, skin: np.ndarray) -> float:
    """Share of the lesion that looks like a blue-white veil: bluish against the skin, milky (mid lightness).

    The veil is an irregular, structureless blue area with a whitish "ground glass" haze (Argenziano 2003);
    its pixels are lighter than the deep blue-black of pigment and bluer than brown.
    """
    lightness, b = lab[..., 0], lab[..., 2]
    skin_l, _, skin_b = (float(v) for v in skin)
    veil = (lightness > 35) & (lightness < skin_l - 8) & (b < skin_b - 4)
    return float((veil & lesion).sum() / max(int(lesion.sum()), 1))
