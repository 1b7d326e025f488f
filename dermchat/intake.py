"""The one place every upload is decoded.

Whatever arrives (JPEG, PNG, WebP, HEIC, a renamed text file, a 0-byte file, a decompression bomb) leaves
this module either as a clean RGB image with *no* metadata (EXIF, GPS, ICC, XMP are all dropped, orientation
applied first) or as an ``ImageInputError`` whose message can be shown to a patient as-is. Phone photos up
to 200 MP are accepted (JPEGs are decoded at reduced scale, the app works at most at ``WORKING_MAX_SIDE``);
black-and-white and mostly transparent pictures are refused with a message that says exactly that, because
the quality check would otherwise blame "no skin", brightness or compression.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, JpegImagePlugin, UnidentifiedImageError

FileSource = str | Path | bytes | BinaryIO
"""An upload not yet decoded: a path, the raw bytes, or an open binary file."""
ImageSource = FileSource | Image.Image

DEFAULT_MAX_BYTES = 25 * 1024 * 1024
DEFAULT_MAX_PIXELS = 200_000_000
"""Largest photo accepted. Phones save 108 MP (12000x9000) and 200 MP (16320x12240) JPEGs; JPEGs are decoded
at reduced scale (``Image.draft``), so even these cost about as much memory as a 12 MP photo."""
FULL_DECODE_MAX_PIXELS = 60_000_000
"""Cap for formats Pillow can only decode at full size (PNG, WebP, HEIC, TIFF, GIF): a 25 MB PNG can hold a
flat 200 MP picture (a decompression bomb) that would take 800 MB of memory to open."""
WORKING_MAX_SIDE = 4096
"""Long side of the image the app works on. The models look at 224-1024 px and the quality check at 320 px;
a 12 MP phone photo (4032x3024) is kept as it is, anything larger is reduced (a JPEG while it is decoded)."""
MOSTLY_TRANSPARENT = 0.5
"""Share of (nearly) transparent pixels above which an image is refused: flattened onto white there would be
more blank page than skin, and the quality check would then blame brightness or compression."""
GREY_CHROMA = 12
"""Channel spread (max - min of R, G, B, 0-255) below which a pixel counts as grey. Skin, even very pale or
very dark, differs by far more (red is always well above blue); JPEG chroma noise in a black-and-white photo
stays below it."""
GREY_MAX_COLOURED = 0.01
"""A photo is black and white when fewer than this share of its mid-tone pixels carry any colour."""
SUPPORTED = "JPEG, PNG, WebP or HEIC (iPhone) photo"
GREYSCALE_MESSAGE = (
    "This picture is black and white. A colour photo is needed to judge a skin spot, because its colours "
    "matter a lot. If it is a photo of skin, please send the original colour photo; if it is a document or a "
    "screenshot, please send a close, well-lit photo of the skin instead."
)
"""Says nothing about filters: a scanned page or a screenshot got "turn off the black-and-white filter"."""

_RESIZABLE = frozenset({"RGB", "RGBA", "L", "LA"})

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


def _read_bytes(source: FileSource, max_bytes: int) -> bytes:
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise ImageInputError(f"The file {path.name!r} could not be found. Please attach it again.")
        if path.is_dir():
            raise ImageInputError(f"{path.name!r} is a folder, not a photo.")
        size = path.stat().st_size
        if size > max_bytes:
            raise ImageInputError(
                f"The photo is too large ({_mb(size)}; the limit is {_mb(max_bytes)}). Please send a smaller copy."
            )
        return path.read_bytes()
    if isinstance(source, bytes):
        data = source
    else:
        data = source.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ImageInputError(f"The photo is too large (the limit is {_mb(max_bytes)}). Please send a smaller copy.")
    return data


def _mb(size: int) -> str:
    """Sizes as the settings state them (``max_upload_mb`` counts 1024 x 1024 bytes): 25 MB, not 26."""
    megabytes = size / (1024 * 1024)
    return f"{megabytes:.0f} MB" if megabytes >= 10 else f"{megabytes:.1f} MB"


def _to_rgb(img: Image.Image, notes: list[str]) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB; transparency is flattened onto white (refused when mostly clear)."""
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
        _refuse_mostly_transparent(rgba)
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        notes.append("transparent areas shown on white")
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode == "CMYK":
        notes.append("converted from CMYK")
    return img.convert("RGB")


def _refuse_mostly_transparent(rgba: Image.Image) -> None:
    """Cut-outs, stickers and exports with an empty alpha layer: say so instead of judging a white page."""
    alpha = np.asarray(rgba.getchannel("A"))
    clear = float((alpha < 128).mean()) if alpha.size else 0.0
    if clear > MOSTLY_TRANSPARENT:
        raise ImageInputError(
            f"This image is mostly transparent (about {clear:.0%} of it is see-through), so there is too little "
            "of the skin to look at. Please send the original photo from the camera, not a cut-out or an "
            "edited copy."
        )


def looks_black_and_white(img: Image.Image) -> bool:
    """True for a greyscale picture (any mode, including RGB with equal channels) that shows something.

    Blank, nearly black or nearly white pictures return False: the quality check explains those better
    ("too dark", "no skin") than "black and white" would.
    """
    longest = max(img.size)
    small = img
    if longest > 256 and img.mode in _RESIZABLE:  # averaging keeps greys grey and colours coloured
        scale = 256 / longest
        small = img.resize(
            (max(1, round(img.width * scale)), max(1, round(img.height * scale))),
            Image.Resampling.BOX,
            reducing_gap=2.0,
        )
    rgb = np.asarray(small.convert("RGB"), dtype=np.int16)
    if rgb.size == 0:
        return False
    luma = rgb.mean(axis=2)
    mid = (luma >= 24) & (luma <= 232)
    if mid.mean() < 0.05 or float(luma[mid].std()) < 2.0:
        return False
    spread = rgb.max(axis=2) - rgb.min(axis=2)
    return float((spread[mid] > GREY_CHROMA).mean()) < GREY_MAX_COLOURED


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


def _open_lazily(data: bytes) -> Image.Image:
    """``Image.open`` reads only the header. Pillow's process-wide decompression-bomb cap is left alone (other
    threads rely on it); a JPEG whose header is over it (a 200 MP phone photo) is opened by the JPEG reader
    directly, which skips that check, because intake decodes JPEGs reduced and ``_check_pixels`` applies the
    app's own caps to every format next. Other formats over Pillow's cap stay refused."""
    with warnings.catch_warnings():  # 90-180 MP: Pillow warns; intake's own cap is what decides
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            return Image.open(io.BytesIO(data))
        except Image.DecompressionBombError:
            if not data.startswith(b"\xff\xd8\xff"):  # the JPEG signature
                raise
            return JpegImagePlugin.JpegImageFile(io.BytesIO(data))


def _check_pixels(img: Image.Image, max_pixels: int) -> None:
    """Refuse sizes no phone produces (decompression bombs) before a single pixel is decoded."""
    pixels = img.width * img.height
    reducible = img.format == "JPEG"
    cap = max_pixels if reducible else min(max_pixels, FULL_DECODE_MAX_PIXELS)
    if pixels > cap:
        kind = "" if reducible else f" for a {img.format or 'non-JPEG'} file"
        raise ImageInputError(
            f"The photo is too large to open safely: {img.width}x{img.height} pixels "
            f"({pixels / 1e6:.0f} megapixels; the limit{kind} is {cap / 1e6:.0f}). "
            f"Please resize it below {cap / 1e6:.0f} megapixels (or send a screenshot of it) and attach it again."
        )


def _reduce(img: Image.Image, notes: list[str]) -> Image.Image:
    """Shrink to ``WORKING_MAX_SIDE``; a JPEG has already been decoded at 1/2-1/8 scale by ``draft``."""
    longest = max(img.size)
    if longest <= WORKING_MAX_SIDE:
        return img
    scale = WORKING_MAX_SIDE / longest
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    notes.append(f"very large photo: analysed at {size[0]}x{size[1]} pixels")
    return img.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def decode_image(
    source: ImageSource,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    require_colour: bool = True,
) -> DecodedImage:
    """Decode an upload into a metadata-free RGB image or raise ``ImageInputError`` with a friendly message.

    ``require_colour``: refuse black-and-white pictures; colour is what the skin models and the user's
    question are about, so a greyscale photo would get a confident-looking but meaningless answer.
    """
    notes: list[str] = []
    if isinstance(source, Image.Image):
        img, fmt = source, source.format
        original_size = img.size
    else:
        data = _read_bytes(source, max_bytes)
        if not data:
            raise ImageInputError("The file is empty (0 bytes). Please attach the photo again.")
        img, fmt, original_size = _open_upload(data, max_pixels, notes)
    img = _upright_rgb(img, notes)
    if require_colour and looks_black_and_white(img):
        raise ImageInputError(GREYSCALE_MESSAGE)
    img = strip_metadata(img)
    return DecodedImage(
        image=img, sha256=pixel_sha256(img), original_format=fmt, original_size=original_size, notes=notes
    )


def _open_upload(data: bytes, max_pixels: int, notes: list[str]) -> tuple[Image.Image, str | None, tuple[int, int]]:
    """The upload's first frame, loaded (a large JPEG at a reduced draft size), with its format and size as sent; or
    one friendly error per way a file can fail: too many pixels, not an image, damaged or cut short."""
    _register_heif()
    try:
        img = _open_lazily(data)
        fmt, original_size = img.format, img.size
        _check_pixels(img, max_pixels)
        if getattr(img, "n_frames", 1) > 1:
            notes.append("animated image: the first frame is used")
            img.seek(0)
        if fmt == "JPEG" and max(img.size) > WORKING_MAX_SIDE:
            scale = WORKING_MAX_SIDE / max(img.size)
            img.draft("RGB", (max(1, int(img.width * scale)), max(1, int(img.height * scale))))
        img.load()
    except ImageInputError:
        raise
    except Image.DecompressionBombError:  # a frame inside the file is larger than its header said
        raise ImageInputError(
            "The photo is too large to open safely. Please resize it below "
            f"{FULL_DECODE_MAX_PIXELS / 1e6:.0f} megapixels and attach it again."
        ) from None
    except UnidentifiedImageError:
        raise ImageInputError(f"This file doesn't look like a photo we can read. Please send a {SUPPORTED}.") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageInputError(
            "The photo seems damaged or only partly uploaded, so it can't be opened. Please take or attach it again."
        ) from exc
    return img, fmt, original_size


def _upright_rgb(img: Image.Image, notes: list[str]) -> Image.Image:
    """Reduced to the working size, turned by its orientation tag and converted to RGB (each step noted)."""
    if img.width < 1 or img.height < 1:
        raise ImageInputError("The image has no pixels. Please attach a real photo.")
    if img.mode in _RESIZABLE:
        img = _reduce(img, notes)  # before the copies below, so they are small
    try:
        img = ImageOps.exif_transpose(img) or img
    except Exception:  # noqa: BLE001 - a broken orientation tag must not lose the photo
        notes.append("could not read the photo's orientation tag; shown as stored")
    return _reduce(_to_rgb(img, notes), notes)  # no-op when already reduced


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
