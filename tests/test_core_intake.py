"""Image intake: every format decodes to clean RGB without metadata; bad input gets a plain message."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dermchat import intake
from dermchat.intake import (
    WORKING_MAX_SIDE,
    ImageInputError,
    choose_image,
    decode_image,
    to_jpeg_bytes,
)
from dermchat.request import TurnRequest
from dermchat.settings import Settings


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


def test_partly_transparent_png_is_flattened_on_white(tmp_path: Path, ham_image: Path) -> None:
    img = Image.open(ham_image).convert("RGBA")
    alpha = Image.new("L", img.size, 255)
    alpha.paste(0, (0, 0, img.width // 5, img.height))  # a transparent band: 20% of the picture
    img.putalpha(alpha)
    img.save(tmp_path / "edge.png")
    decoded = decode_image(tmp_path / "edge.png")
    assert decoded.image.getpixel((0, 0)) == (255, 255, 255)
    assert "transparent areas shown on white" in decoded.notes


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_mostly_transparent_image_is_refused_plainly(tmp_path: Path, ham_image: Path, mode: str) -> None:
    """A cut-out or an export with an empty alpha layer: not "too bright" or "compressed", but what it is."""
    img = Image.open(ham_image).convert("RGBA")
    alpha = Image.new("L", img.size, 0)
    alpha.paste(255, (0, 0, img.width // 4, img.height // 4))  # only a corner is visible
    img.putalpha(alpha)
    if mode == "P":
        img = img.convert("P")  # Pillow keeps a transparent palette entry
        img.info["transparency"] = img.getpixel((img.width - 1, img.height - 1))
    else:
        img = img.convert(mode)
    img.save(tmp_path / "cutout.png", **({"transparency": img.info["transparency"]} if mode == "P" else {}))
    with pytest.raises(ImageInputError, match="mostly transparent") as info:
        decode_image(tmp_path / "cutout.png")
    assert "original photo" in str(info.value)


def test_black_and_white_photo_is_refused_and_colour_kept(tmp_path: Path, ham_image: Path) -> None:
    colour = Image.open(ham_image)
    assert decode_image(ham_image).image.size == colour.size  # the real colour photo passes
    colour.convert("L").save(tmp_path / "grey.png")
    colour.convert("L").convert("RGB").save(tmp_path / "grey_rgb.jpg", quality=70)  # chroma noise from JPEG
    colour.convert("LA").save(tmp_path / "grey_alpha.png")
    for name in ["grey.png", "grey_rgb.jpg", "grey_alpha.png"]:
        with pytest.raises(ImageInputError, match="black and white") as info:
            decode_image(tmp_path / name)
        assert "colour photo is needed" in str(info.value)
    assert decode_image(tmp_path / "grey.png", require_colour=False).image.mode == "RGB"


def test_blank_greyscale_pictures_are_left_to_the_quality_check(tmp_path: Path) -> None:
    """A black frame (lens cap) is "too dark", not "black and white": intake lets it through."""
    Image.new("L", (64, 48), 3).save(tmp_path / "black.png")
    Image.new("RGB", (64, 48), (128, 128, 128)).save(tmp_path / "flat.png")
    assert decode_image(tmp_path / "black.png").image.mode == "RGB"
    assert decode_image(tmp_path / "flat.png").image.mode == "RGB"


def test_black_and_white_upload_ends_the_turn_as_invalid_input(tmp_path: Path, ham_image: Path) -> None:
    from core_helpers import fake_app

    Image.open(ham_image).convert("L").save(tmp_path / "grey.jpg")
    events = list(
        fake_app(tmp_path / "turns").run_turn(TurnRequest(image=str(tmp_path / "grey.jpg"), question="what is this?"))
    )
    result = events[-1].result
    assert result is not None and result.status == "invalid_input"
    assert "black and white" in (result.message or "") and result.diagnosis is None


def test_animated_gif_uses_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (10, 10), c) for c in [(255, 0, 0), (0, 0, 255)]]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    decoded = decode_image(tmp_path / "anim.gif")
    r, _g, b = decoded.image.getpixel((5, 5))
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


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"", "empty"),
        (b"%PDF-1.4 not a photo", "doesn't look like a photo"),
    ],
)
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


def _phone_jpeg(path: Path, size: tuple[int, int], orientation: int | None = None) -> Path:
    """A smooth skin-coloured gradient at phone resolution (cheap to encode: flat 8x8 blocks)."""
    ramp = Image.linear_gradient("L").resize((size[0] // 10, size[1] // 10))
    small = Image.merge(
        "RGB",
        [ramp.point(lambda v: 150 + v // 3), ramp.point(lambda v: 100 + v // 4), ramp.point(lambda v: 80 + v // 5)],
    )
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    small.resize(size, Image.Resampling.NEAREST).save(path, format="JPEG", quality=60, exif=exif.tobytes())
    return path


def _spy_on_draft(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """Record the size the JPEG decoder was set to decode at (the full size when ``draft`` is not used)."""
    from PIL import JpegImagePlugin

    decoded_at: list[tuple[int, int]] = []
    original = JpegImagePlugin.JpegImageFile.draft

    def draft(
        self: JpegImagePlugin.JpegImageFile, mode: str | None, size: tuple[int, int] | None
    ) -> tuple[str, tuple[int, int, float, float]] | None:
        result = original(self, mode, size)
        decoded_at.append(self.size)
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", draft)
    return decoded_at


def test_108_megapixel_phone_photo_is_decoded_reduced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """12000x9000 JPEGs (current phones) used to hit Pillow's bomb check; now libjpeg decodes them at 1/2."""
    path = _phone_jpeg(tmp_path / "phone108.jpg", (12000, 9000))
    decoded_at = _spy_on_draft(monkeypatch)
    decoded = decode_image(path)
    assert decoded_at == [(6000, 4500)]  # never decoded at the full 108 MP
    assert decoded.original_size == (12000, 9000) and decoded.original_format == "JPEG"
    assert decoded.image.size == (WORKING_MAX_SIDE, WORKING_MAX_SIDE * 3 // 4)
    assert any("very large photo" in note for note in decoded.notes)
    assert Settings().max_image_pixels >= 12000 * 9000  # the app's own cap lets it through too


def test_reduced_decode_keeps_orientation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(intake, "WORKING_MAX_SIDE", 500)
    path = _phone_jpeg(tmp_path / "portrait.jpg", (2000, 1500), orientation=6)
    decoded_at = _spy_on_draft(monkeypatch)
    decoded = decode_image(path)
    assert decoded_at == [(500, 375)]  # 1/4 scale: exactly the working size
    assert decoded.image.size == (375, 500) and not decoded.image.getexif()


def test_absurd_sizes_are_refused_with_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    jpeg = _phone_jpeg(tmp_path / "big.jpg", (3000, 2000))
    with pytest.raises(ImageInputError, match=r"3000x2000 pixels \(6 megapixels.*resize it below 5 megapixels"):
        decode_image(jpeg, max_pixels=5_000_000)
    monkeypatch.setattr(intake, "FULL_DECODE_MAX_PIXELS", 1_000_000)  # PNG cannot be decoded reduced
    Image.new("RGB", (1500, 1000), (200, 120, 100)).save(tmp_path / "bomb.png")
    with pytest.raises(ImageInputError, match=r"limit for a PNG file is 1\b.*resize it below 1 megapixels"):
        decode_image(tmp_path / "bomb.png")
    assert decode_image(jpeg).image.size == (3000, 2000)  # the same cap does not apply to a JPEG


def test_size_and_pixel_caps(tmp_path: Path) -> None:
    Image.new("RGB", (3000, 3000)).save(tmp_path / "big.png")
    with pytest.raises(ImageInputError, match=r"too many pixels|too large"):
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


def _jpeg_with_header_size(path: Path, size: tuple[int, int]) -> Path:
    """A small real JPEG whose frame header (SOF0) claims ``size``: how a 200 MP photo looks to the header reader."""
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (190, 140, 120)).save(buf, format="JPEG", quality=80)
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = size[1].to_bytes(2, "big") + size[0].to_bytes(2, "big")
    path.write_bytes(bytes(data))
    return path


def test_jpeg_over_pillows_own_cap_is_read_without_touching_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pillow refuses headers over 2x ``MAX_IMAGE_PIXELS`` (179 MP); a 192 MP JPEG must still reach the reduced
    decoder, and Pillow's process-wide cap, which other threads rely on, must never be switched off to do it."""
    from PIL import JpegImagePlugin

    pillow_cap = Image.MAX_IMAGE_PIXELS
    seen_caps: list[int | None] = []
    real_open = JpegImagePlugin.JpegImageFile._open

    def spy_open(self: JpegImagePlugin.JpegImageFile) -> None:
        seen_caps.append(Image.MAX_IMAGE_PIXELS)
        real_open(self)

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "_open", spy_open)
    decoded_at = _spy_on_draft(monkeypatch)
    path = _jpeg_with_header_size(tmp_path / "phone192.jpg", (16000, 12000))
    decoded = decode_image(path)  # libjpeg pads the missing scan data: what matters here is the path taken
    assert decoded_at == [(8000, 6000)]  # past every size check, to the half-scale decoder
    assert decoded.original_size == (16000, 12000) and decoded.image.size == (WORKING_MAX_SIDE, 3072)
    assert seen_caps and all(cap == pillow_cap for cap in seen_caps)
    assert pillow_cap == Image.MAX_IMAGE_PIXELS
    with pytest.raises(ImageInputError, match=r"20000x15000 pixels \(300 megapixels; the limit is 200\)"):
        decode_image(_jpeg_with_header_size(tmp_path / "absurd.jpg", (20000, 15000)))


def test_the_size_limit_is_quoted_as_configured(tmp_path: Path) -> None:
    """``max_upload_mb`` counts MiB: a 27 MiB photo against the default 25 must read '27 MB; the limit is 25 MB'
    (it read '28 MB; the limit is 26 MB', a limit the user never set)."""
    big = tmp_path / "big.jpg"
    big.write_bytes(b"\xff\xd8\xff" + bytes(27 * 1024 * 1024))
    limit = Settings().max_upload_bytes
    with pytest.raises(ImageInputError, match=r"\(27 MB; the limit is 25 MB\)"):
        decode_image(big, max_bytes=limit)
    with pytest.raises(ImageInputError, match=r"the limit is 0.5 MB\)"):
        decode_image(big.read_bytes(), max_bytes=512 * 1024)
