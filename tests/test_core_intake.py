"""Image intake: every format decodes to clean RGB without metadata; bad input gets a plain message."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dermchat.intake import ImageInputError, choose_image, decode_image, to_jpeg_bytes


def _jpeg_with_gps_and_orientation(path: Path) -> Path:
    img = Image.new("RGB", (40, 20), (180, 120, 100))
    img.paste((20, 20, 20), (0, 0, 10, 20))  # dark band on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise for display
    exif[0x010F] = "PhoneMaker"
    gps = {1: "N", 2: (51.0, 30.0, 0.0), 3: "W", 4: (0.0, 7.0, 0.0)}
    exif[0x8825] = gps
    img.save(path, format="JPEG", exif=exif.tobytes(), quality=95)
    return path


def test_exif_gps_is_stripped_and_orientation_applied(tmp_path: Path) -> None:
    source = _jpeg_with_gps_and_orientation(tmp_path / "phone.jpg")
    assert Image.open(source).getexif().get(0x8825)  # the test file really carries GPS
    decoded = decode_image(source)
    assert decoded.image.size == (20, 40)  # rotated by the orientation tag
    assert not decoded.image.info and not decoded.image.getexif()
    forwarded = Image.open(io.BytesIO(to_jpeg_bytes(decoded.image)))
    assert not forwarded.getexif() and "exif" not in forwarded.info and "icc_profile" not in forwarded.info


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "CMYK", "L", "1", "I;16"])
def test_modes_become_rgb(tmp_path: Path, mode: str) -> None:
    base = Image.new("RGB", (16, 12), (200, 100, 50))
    if mode == "I;16":
        img = Image.fromarray(np.full((12, 16), 40000, dtype=np.uint16))
        path = tmp_path / "deep.png"
    else:
        img = base.convert(mode)
        path = tmp_path / f"img.{'tiff' if mode == 'CMYK' else 'png'}"
    img.save(path)
    decoded = decode_image(path)
    assert decoded.image.mode == "RGB" and decoded.image.size == (16, 12)
    if mode == "I;16":
        assert decoded.image.getpixel((0, 0))[0] == 255  # scaled down from 16 bits, not clipped garbage


def test_transparent_png_is_flattened_on_white(tmp_path: Path) -> None:
    img = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    img.save(tmp_path / "clear.png")
    assert decode_image(tmp_path / "clear.png").image.getpixel((0, 0)) == (255, 255, 255)


def test_animated_gif_uses_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (10, 10), c) for c in [(255, 0, 0), (0, 0, 255)]]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    decoded = decode_image(tmp_path / "anim.gif")
    r, g, b = decoded.image.getpixel((5, 5))
    assert r > 200 and b < 50 and any("first frame" in n for n in decoded.notes)


def test_webp_and_heic(tmp_path: Path) -> None:
    Image.new("RGB", (30, 20), (10, 200, 30)).save(tmp_path / "a.webp")
    assert decode_image(tmp_path / "a.webp").image.size == (30, 20)
    pillow_heif = pytest.importorskip("pillow_heif")
    pillow_heif.register_heif_opener()
    try:
        Image.new("RGB", (32, 24), (10, 200, 30)).save(tmp_path / "a.heic")
    except (OSError, KeyError, ValueError) as exc:  # encoder missing in this build
        pytest.skip(f"this pillow-heif build cannot encode HEIC: {exc}")
    decoded = decode_image(tmp_path / "a.heic")
    assert decoded.image.size == (32, 24) and decoded.original_format == "HEIF"


@pytest.mark.parametrize("content, expected", [
    (b"", "empty"),
    (b"%PDF-1.4 not a photo", "doesn't look like a photo"),
])
def test_bad_files_raise_friendly_errors(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "upload.png"
    path.write_bytes(content)
    with pytest.raises(ImageInputError, match=expected):
        decode_image(path)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_upload(tmp_path: Path, fmt: str) -> None:
    buf = io.BytesIO()
    Image.effect_noise((200, 150), 50).convert("RGB").save(buf, format=fmt)
    (tmp_path / "cut").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageInputError, match="damaged or only partly uploaded"):
        decode_image(tmp_path / "cut")


def test_size_and_pixel_caps(tmp_path: Path) -> None:
    Image.new("RGB", (3000, 3000)).save(tmp_path / "big.png")
    with pytest.raises(ImageInputError, match="too many pixels|too large"):
        decode_image(tmp_path / "big.png", max_pixels=1_000_000)
    with pytest.raises(ImageInputError, match="too large"):
        decode_image(tmp_path / "big.png", max_bytes=1000)
    with pytest.raises(ImageInputError, match="could not be found"):
        decode_image(tmp_path / "missing.jpg")


def test_same_pixels_same_hash_whatever_the_metadata(tmp_path: Path) -> None:
    img = Image.new("RGB", (8, 8), (1, 2, 3))
    img.save(tmp_path / "a.png")
    exif = Image.Exif()
    exif[0x010F] = "Maker"
    img.save(tmp_path / "b.png", exif=exif.tobytes())
    assert decode_image(tmp_path / "a.png").sha256 == decode_image(tmp_path / "b.png").sha256


def test_choose_image_says_which_one_is_used() -> None:
    assert choose_image([]) == (None, None)
    assert choose_image(["a.jpg"]) == ("a.jpg", None)
    chosen, note = choose_image(["a.jpg", "b.jpg"])
    assert chosen == "b.jpg" and "last one" in note
