"""Issue 19 items 5 and 6: dermoscopic or not, not-skin pictures, hair is not noise, a self-consistent table.

Real HAM10000 photos must keep passing; ordinary pictures come from scikit-image's bundled samples and from the
abstention set's builders (a spot drawn on plain skin, a HAM lesion shrunk into a phone-style frame).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from core_helpers import ham_arrays
from PIL import Image, ImageDraw

from dermchat.abstention_eval import drawn_spot, phone_framed, skimage_pictures
from dermchat.intake import ImageInputError, decode_image
from dermchat.quality.assess import assess_array, assess_image
from dermchat.render import render_quality

# Nevi, melanomas, BCCs, keratoses and a vascular lesion from across the metadata (several with hair).
HAM_IDS = (
    "ISIC_0024307",
    "ISIC_0027419",
    "ISIC_0025030",
    "ISIC_0026769",
    "ISIC_0025661",
    "ISIC_0031023",
    "ISIC_0028155",
    "ISIC_0029417",
    "ISIC_0024345",
    "ISIC_0032404",
    "ISIC_0025964",
    "ISIC_0030877",
)


@pytest.fixture(scope="module")
def ham(ham_dir: Path) -> dict[str, np.ndarray]:
    return ham_arrays(ham_dir, tuple(i for i in HAM_IDS if (ham_dir / "images" / f"{i}.jpg").exists()))


@pytest.fixture(scope="module")
def pictures() -> dict[str, Image.Image]:
    return skimage_pictures()


def test_real_dermoscopic_photos_are_judged_dermoscopic(ham: dict[str, np.ndarray]) -> None:
    assert len(ham) >= 10
    verdicts = {image_id: assess_array(arr).dermoscopic for image_id, arr in ham.items()}
    assert all(verdicts.values()), verdicts


@pytest.mark.parametrize("name", ["face_crop", "astronaut", "drawn_spot", "phone_framed"])
def test_ordinary_photos_of_skin_are_judged_not_dermoscopic(
    name: str, pictures: dict[str, Image.Image], ham: dict[str, np.ndarray]
) -> None:
    if name == "drawn_spot":
        img = drawn_spot(0)
    elif name == "phone_framed":
        img = phone_framed(Image.fromarray(next(iter(ham.values()))))
    else:
        img = pictures[name]
    report = assess_image(img)
    assert report.dermoscopic is False or not report.is_skin, report.dermoscopy_detail
    if report.is_skin:
        assert "not dermoscopic" in report.dermoscopy_detail


@pytest.mark.parametrize("name", ["cat", "coffee"])
def test_a_cat_or_a_cup_never_passes_as_a_dermoscopic_skin_photo(name: str, pictures: dict[str, Image.Image]) -> None:
    report = assess_image(pictures[name])
    assert not report.is_skin or report.dermoscopic is False


def test_a_greyscale_document_is_not_told_to_turn_off_a_filter(
    tmp_path: Path, pictures: dict[str, Image.Image], ham_image: Path
) -> None:
    pictures["page"].save(tmp_path / "page.png")
    with pytest.raises(ImageInputError) as info:
        decode_image(tmp_path / "page.png")
    assert "filter" not in str(info.value) and "photo of the skin" in str(info.value)
    Image.open(ham_image).convert("L").save(tmp_path / "grey.png")  # a grey photo of skin: send the colour one
    with pytest.raises(ImageInputError, match="original colour photo"):
        decode_image(tmp_path / "grey.png")


HAIRS = 300  # dense hair; the old estimate read every photo here as grainy (noise score 0)


def _with_hair(arr: np.ndarray, seed: int = 0) -> np.ndarray:
    img = Image.fromarray(arr)
    draw = ImageDraw.Draw(img)
    rng = np.random.default_rng(seed)
    h, w = arr.shape[:2]
    for _ in range(HAIRS):  # dark, thin, curved hairs across the frame
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        points = [(x, y)]
        angle = rng.uniform(0, np.pi)
        for _ in range(8):
            angle += rng.normal(0, 0.2)
            x, y = x + 9 * np.cos(angle), y + 9 * np.sin(angle)
            points.append((x, y))
        draw.line(points, fill=(40, 30, 25), width=1)
    return np.asarray(img)


def test_hair_does_not_read_as_noise(ham: dict[str, np.ndarray]) -> None:
    # A clean hair-bearing BCC was refused as "grainy ... too little light" at brightness 0.72.
    for image_id, arr in list(ham.items())[:4]:
        clean = {r.id: r for r in assess_array(arr).reasons}
        hairy = {r.id: r for r in assess_array(_with_hair(arr)).reasons}
        assert not hairy["noise"].problem, (image_id, hairy["noise"].clinician_detail)
        assert hairy["noise"].score >= clean["noise"].score - 15


def test_noise_tip_does_not_blame_the_light_on_a_well_lit_photo(ham: dict[str, np.ndarray]) -> None:
    arr = next(iter(ham.values()))
    rng = np.random.default_rng(0)
    noisy = np.clip(arr.astype(np.float32) + rng.normal(0, 18, arr.shape), 0, 255).astype(np.uint8)
    reasons = {r.id: r for r in assess_array(noisy).reasons}
    assert reasons["noise"].problem and reasons["underexposed"].score >= 90
    assert "too little light" not in reasons["noise"].patient_tip


def test_clinician_table_says_which_way_is_good_and_agrees_with_itself(ham: dict[str, np.ndarray]) -> None:
    report = assess_array(next(iter(ham.values())))
    table = render_quality(report, "clinician")
    assert "100 = no problem" in table and "lower is better" in table and "higher is better" in table
    cast = next(r for r in report.reasons if r.id == "color_cast")
    assert cast.value == 0 and "unreliable" not in cast.clinician_detail
    assert "Dermoscopy check: dermoscopic" in table
