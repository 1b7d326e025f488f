"""The one place every upload is decoded.

Whatever arrives (JPEG, PNG, WebP, HEIC, a renamed text file, a 0-byte file, a decompression bomb) leaves
this module either as a clean RGB image with *no* metadata (EXIF, GPS, ICC, XMP are all dropped, orientation
applied first) or as an ``ImageInputError`` whose message can be shown to a patient as-is.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

ImageSource = Union[str, Path, bytes, BinaryIO, Image.Image]

DEFAULT_MAX_BYTES = 25 * 1024 * 1024
DEFAULT_MAX_PIXELS = 60_000_000
SUPPORTED = "JPEG, PNG, WebP or HEIC (iPhone) photo"

_heif_registered = False


class ImageInputError(ValueError):
    """An upload we cannot use; ``str(exc)`` is a plain-language message for the chat."""


@dataclass
class DecodedImage:
    image: Image.Image
    sha256: str
    original_format: str | None
    original_size: tuple[int, int]
    notes: list[str] = field(default_factory=list)


def _register_heif() -> None:
    """Teach Pillow to open HEIC/HEIF (iPhone photos) when pillow-heif is installed."""
    global _heif_registered
    if _heif_registered:
        return
    try:
        import pillow_heif

        pillow_heif.register_heif_opener()
    except ImportError:
        pass
    _heif_registered = True


def _read_bytes(source: ImageSource, max_bytes: int) -> bytes:
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise ImageInputError(f"The file {path.name!r} could not be found. Please attach it again.")
        if path.is_dir():
            raise ImageInputError(f"{path.name!r} is a folder, not a photo.")
        size = path.stat().st_size
        if size > max_bytes:
            raise ImageInputError(
                f"The photo is too large ({size / 1e6:.0f} MB; the limit is {max_bytes / 1e6:.0f} MB). "
                "Please send a smaller copy."
            )
        return path.read_bytes()
    if isinstance(source, bytes):
        data = source
    else:
        data = source.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ImageInputError(f"The photo is too large (the limit is {max_bytes / 1e6:.0f} MB). Please send a smaller copy.")
    return data


def _to_rgb(img: Image.Image, notes: list[str]) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB; transparency is flattened onto white."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in {"I;16", "I;16B", "I;16L", "I", "F"}:
        arr = np.asarray(img, dtype=np.float64)
        top = arr.max() if arr.size else 0.0
        scale = 255.0 / top if top > 255 else 1.0
        notes.append(f"converted from {mode} (high bit depth) to 8-bit")
        return Image.fromarray(np.clip(np.rint(arr * scale), 0, 255).astype(np.uint8), "L").convert("RGB")
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in {"RGBA", "LA", "PA", "RGBa", "La"}:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        notes.append("transparent areas shown on white")
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode == "CMYK":
        notes.append("converted from CMYK")
    return img.convert("RGB")


def strip_metadata(img: Image.Image) -> Image.Image:
    """A copy with pixels only: no EXIF (GPS!), ICC profile, XMP, comments or format info."""
    clean = Image.new(img.mode, img.size)
    clean.paste(img)
    clean.info = {}
    return clean


def pixel_sha256(img: Image.Image) -> str:
    """Hash of the decoded pixels: the same picture gives the same hash whatever metadata it carried."""
    digest = hashlib.sha256()
    digest.update(f"{img.mode}:{img.size[0]}x{img.size[1]}:".encode())
    digest.update(img.tobytes())
    return digest.hexdigest()


def decode_image(
    source: ImageSource,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> DecodedImage:
    """Decode an upload into a metadata-free RGB image or raise ``ImageInputError`` with a friendly message."""
    notes: list[str] = []
    if isinstance(source, Image.Image):
        img, fmt = source, source.format
    else:
        data = _read_bytes(source, max_bytes)
        if not data:
            raise ImageInputError("The file is empty (0 bytes). Please attach the photo again.")
        _register_heif()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                previous_cap = Image.MAX_IMAGE_PIXELS
                Image.MAX_IMAGE_PIXELS = max_pixels
                try:
                    img = Image.open(io.BytesIO(data))
                    fmt = img.format
                    if img.width * img.height > max_pixels:
                        raise ImageInputError(
                            f"The photo has too many pixels ({img.width}x{img.height}). "
                            "Please send a smaller copy (for example, a screenshot of it)."
                        )
                    if getattr(img, "n_frames", 1) > 1:
                        notes.append("animated image: the first frame is used")
                        img.seek(0)
                    img.load()
                finally:
                    Image.MAX_IMAGE_PIXELS = previous_cap
        except ImageInputError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ImageInputError(
                "The photo is far too large to open safely. Please send a smaller copy."
            ) from None
        except UnidentifiedImageError:
            raise ImageInputError(
                f"This file doesn't look like a photo we can read. Please send a {SUPPORTED}."
            ) from None
        except (OSError, SyntaxError, ValueError) as exc:
            raise ImageInputError(
                "The photo seems damaged or only partly uploaded, so it can't be opened. "
                "Please take or attach it again."
            ) from exc
    original_size = img.size
    if img.width < 1 or img.height < 1:
        raise ImageInputError("The image has no pixels. Please attach a real photo.")
    try:
        img = ImageOps.exif_transpose(img) or img
    except Exception:  # noqa: BLE001 - a broken orientation tag must not lose the photo
        notes.append("could not read the photo's orientation tag; shown as stored")
    img = strip_metadata(_to_rgb(img, notes))
    return DecodedImage(image=img, sha256=pixel_sha256(img), original_format=fmt, original_size=original_size, notes=notes)


def choose_image(paths: list[str]) -> tuple[str | None, str | None]:
    """Several attachments: use the last image and say so (the others are ignored, not lost)."""
    if not paths:
        return None, None
    if len(paths) == 1:
        return paths[0], None
    chosen = paths[-1]
    return chosen, (
        f"You attached {len(paths)} files; I looked at the last one ({Path(chosen).name}). "
        "Send the others one at a time if you'd like me to look at them too."
    )


def to_jpeg_bytes(img: Image.Image, quality: int = 90) -> bytes:
    """Encode for forwarding (model servers, study storage) with no metadata at all."""
    buf = io.BytesIO()
    strip_metadata(img.convert("RGB")).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
