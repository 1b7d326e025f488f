"""Getting a photo into the small RGB array the quality check measures, as cheaply as possible.

Why: the check must cost less than decoding the photo it reads. A phone photo (12 MP) is reduced with
Pillow's ``reduce`` path inside ``resize(reducing_gap=...)``, which averages whole pixel blocks first and is
several times faster than a plain resampling; files can go further with ``Image.draft`` (the JPEG decoder
then decodes at 1/2, 1/4 or 1/8 scale directly). Images are never upscaled: a small photo is measured as is
and the low resolution is reported as a problem of its own.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

DEFAULT_MAX_SIDE = 320
"""Long side of the analysis copy. The diagnosers look at about 224-384 px inputs, so blur or noise that is
invisible at this size hardly changes what they see; it also keeps the check cheaper than decoding a phone
photo. HAM10000-size images (200x150) are measured as they are."""


def reduced_size(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """(w, h) scaled so the long side is at most ``max_side``; unchanged when already smaller."""
    w, h = size
    scale = max_side / max(w, h)
    if scale >= 1.0:
        return w, h
    return max(1, round(w * scale)), max(1, round(h * scale))


def analysis_copy(image: Image.Image, max_side: int = DEFAULT_MAX_SIDE) -> np.ndarray:
    """HxWx3 uint8 array of ``image`` with its long side at most ``max_side`` (never upscaled)."""
    if image.width < 1 or image.height < 1:
        raise ValueError("the image has no pixels")
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    target = reduced_size(rgb.size, max_side)
    if target != rgb.size:
        rgb = rgb.resize(target, Image.Resampling.BOX, reducing_gap=2.0)
    return np.asarray(rgb)


COMPRESSION_CROP_SIDE = 768
"""Side of the full-resolution centre crop on which JPEG block artefacts are measured. The 8x8 block grid
only exists on the photo's own pixel grid: the analysis copy of a phone photo is shrunk 3-12x, which hides the
blocks from the measure while the diagnosers (and the user) still see them. A crop, not the whole photo, keeps
the cost to a few milliseconds on a 12 MP photo; the centre is where the lesion is meant to be."""


def compression_crop(image: Image.Image, side: int = COMPRESSION_CROP_SIDE) -> np.ndarray:
    """HxWx3 uint8 centre crop of ``image`` at full (decoded) resolution, at most ``side`` px a side.

    The crop starts on a multiple of 8 pixels so that it keeps the JPEG block grid's phase (the measure finds
    the phase itself; alignment just keeps whole blocks at the crop's edges).
    """
    if image.width < 1 or image.height < 1:
        raise ValueError("the image has no pixels")
    w, h = image.size
    cw, ch = min(w, side), min(h, side)
    x0 = (w - cw) // 2 // 8 * 8
    y0 = (h - ch) // 2 // 8 * 8
    crop = image.crop((x0, y0, x0 + cw, y0 + ch)) if (cw, ch) != (w, h) else image
    return np.asarray(crop if crop.mode == "RGB" else crop.convert("RGB"))


def open_for_quality(path: str | Path, max_side: int = DEFAULT_MAX_SIDE) -> tuple[np.ndarray, tuple[int, int]]:
    """Decode a file straight to its analysis copy; returns the array and the photo's full (w, h).

    ``draft`` lets the JPEG decoder skip most of the work for large photos; EXIF orientation is applied so
    the framing measures see the photo the way the user took it. A draft decode loses the JPEG block grid, so
    callers that need the compression measure decode in full and use :func:`compression_crop`.
    """
    with Image.open(path) as im:
        full = im.size
        if im.format == "JPEG":
            im.draft("RGB", reduced_size(full, max_side * 2))
        oriented = ImageOps.exif_transpose(im)
        if oriented.size != im.size:
            full = (full[1], full[0])
        return analysis_copy(oriented, max_side), full
