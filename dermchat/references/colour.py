"""sRGB <-> CIELab (D65) in plain numpy.

Why not skimage/cv2: this runs per atlas image (8.5k thumbnails) and per turn, and a 20-line vectorised
conversion avoids importing a large library in the exemplar path. Formulas: IEC 61966-2-1 sRGB transfer
function and CIE 1976 L*a*b* with the D65 white point.
"""

from __future__ import annotations

import numpy as np

_RGB_TO_XYZ = np.array(
    [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]]
)
_XYZ_TO_RGB = np.linalg.inv(_RGB_TO_XYZ)
_WHITE_D65 = np.array([0.95047, 1.0, 1.08883])
_EPS = 216 / 24389
_KAPPA = 24389 / 27
_LEVELS = np.arange(256) / 255.0
_LINEAR_LUT = np.where(_LEVELS <= 0.04045, _LEVELS / 12.92, ((_LEVELS + 0.055) / 1.055) ** 2.4)


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """``(..., 3)`` uint8 (0-255) or float (0-1) sRGB -> ``(..., 3)`` float32 Lab."""
    arr = np.asarray(rgb)
    if arr.dtype == np.uint8:
        linear = _LINEAR_LUT[arr]  # a table lookup instead of a power per pixel: the atlas build's hot loop
    else:
        x = arr.astype(np.float64)
        linear = np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)
    xyz = linear @ _RGB_TO_XYZ.T / _WHITE_D65
    f = np.where(xyz > _EPS, np.cbrt(xyz), (_KAPPA * xyz + 16) / 116)
    lab = np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)
    return lab.astype(np.float32)


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """``(..., 3)`` Lab -> ``(..., 3)`` uint8 sRGB (clipped to the gamut)."""
    lab = np.asarray(lab, dtype=np.float64)
    fy = (lab[..., 0] + 16) / 116
    fx = fy + lab[..., 1] / 500
    fz = fy - lab[..., 2] / 200
    f = np.stack([fx, fy, fz], axis=-1)
    xyz = np.where(f**3 > _EPS, f**3, (116 * f - 16) / _KAPPA) * _WHITE_D65
    linear = np.clip(xyz @ _XYZ_TO_RGB.T, 0, 1)
    srgb = np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)
    rgb: np.ndarray = np.clip(np.round(srgb * 255), 0, 255).astype(np.uint8)
    return rgb
