"""``python -m dermchat describe IMAGE`` and ``python -m dermchat compare EARLIER LATER``.

Photos are decoded by :func:`dermchat.intake.decode_image`, exactly as the chat decodes uploads (orientation
applied, metadata dropped), so the command line and the app describe the same pixels. An unreadable photo or
mask is one ``error:`` line and exit status 2.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from dermchat.cli_output import emit, fail


def _decode(path: str) -> Any:
    from dermchat.intake import decode_image

    if not Path(path).exists():
        raise ValueError(f"{path}: no such file")
    return decode_image(path).image


def _mask(path: str | None) -> np.ndarray | None:
    if not path:
        return None
    from PIL import Image

    if not Path(path).exists():
        raise ValueError(f"{path}: no such mask file")
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("L")) > 127
    except OSError as exc:
        raise ValueError(f"{path}: not a readable mask image ({exc})") from exc


def describe_main(argv: list[str]) -> int:
    from dermchat.intake import ImageInputError
    from dermchat.morphology import describe
    from dermchat.render import MORPHOLOGY_CAVEAT, describe_for_patient, morphology_table

    parser = argparse.ArgumentParser(
        prog="python -m dermchat describe", description="dermoscopic ABCD descriptors of the lesion in a photo"
    )
    parser.add_argument("image")
    parser.add_argument("--mask", help="lesion mask (white = lesion, same size as the photo); default: estimated")
    parser.add_argument("--mm-per-px", type=float, help="scale of the photo, adds the diameter in mm")
    _outline_option(parser)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.mm_per_px is not None and args.mm_per_px <= 0:
        return fail("--mm-per-px must be a positive number of millimetres per pixel")
    try:
        result = describe(_decode(args.image), _mask(args.mask), mm_per_px=args.mm_per_px, outline=args.outline)
    except (ImageInputError, ValueError, RuntimeError) as exc:
        return fail(exc)
    return emit(
        result.as_dict(),
        args.json,
        lambda d: print(f"{describe_for_patient(d)} {MORPHOLOGY_CAVEAT}\n\n{morphology_table(d)}"),
    )


def compare_main(argv: list[str]) -> int:
    from dermchat.intake import ImageInputError
    from dermchat.morphology import compare
    from dermchat.render import render_comparison

    parser = argparse.ArgumentParser(
        prog="python -m dermchat compare", description="compare an earlier and a later photo of the same spot"
    )
    parser.add_argument("earlier")
    parser.add_argument("later")
    _outline_option(parser)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        result = compare(_decode(args.earlier), _decode(args.later), outline=args.outline).as_dict()
    except (ImageInputError, ValueError, RuntimeError) as exc:
        return fail(exc)
    return emit(result, args.json, lambda d: print(render_comparison(d, "clinician")))


def _outline_option(parser: argparse.ArgumentParser) -> None:
    from dermchat.morphology.outline import OUTLINE_METHODS

    parser.add_argument(
        "--outline",
        choices=OUTLINE_METHODS,
        default="auto",
        help="lesion outline when no --mask is given: the learned U-Net (auto: if its weights load) or classical",
    )
