"""Optional age/sex/body site as evidence for the ham-cnn model: parsing, the fitted prior, the calibrated path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from classifier_fixtures import weights_dir_or_skip
from PIL import Image

from dermchat.classifier import HAM_CLASSES
from dermchat.classifier.patient_info import (
    FEATURE_NAMES,
    PatientInfo,
    PatientPrior,
    features,
    ignored_details,
    infos_from_records,
    normalise_site,
)
from dermchat.request import PatientDetails, TurnRequest


@pytest.mark.parametrize(
    "text, site",
    [
        ("left forearm", "upper extremity"),
        ("Upper extremity", "upper extremity"),
        ("earlobe", "ear"),
        ("back of the neck", "neck"),
        ("lower back", "back"),
        ("thigh", "lower extremity"),
        ("fingers", "hand"),
        ("sole of the foot", "acral"),
        ("FACE", "face"),
        ("somewhere", None),
        ("", None),
        (None, None),
    ],
)
def test_everyday_body_site_words_map_to_the_training_sites(text: str | None, site: str | None) -> None:
    assert normalise_site(text) == site


def test_unusable_details_count_as_not_given() -> None:
    info = PatientInfo.from_user(age="abc", sex="prefer not to say", site="somewhere")
    assert ignored_details("abc", "prefer not to say", "somewhere") == [
        "age 'abc' (expected a number of years from 0 to 120)",
        "body site 'somewhere' (not recognised; for example 'back', 'left forearm', 'scalp')",
    ]
    assert ignored_details("45", "F", "left forearm") == []
    assert not info.given and not features(info).any()
    assert PatientInfo.from_user(age=150).age is None and PatientInfo.from_user(age=float("nan")).age is None
    full = PatientInfo.from_user(age="45", sex="F", site="left forearm")
    assert full == PatientInfo(age=45.0, sex="female", site="upper extremity")
    assert features(full).sum() == 3 and len(features(full)) == len(FEATURE_NAMES)


@pytest.fixture(scope="module")
def train_records(ham_dir: Path) -> list:
    from dermchat.classifier.data import read_metadata, split_by_lesion

    records = read_metadata(ham_dir)
    train = set(split_by_lesion(records, seed=0)["train"])
    return [r for r in records if r.image_id in train]


def test_prior_learns_who_gets_which_lesion_and_says_nothing_without_details(
    train_records: list, tmp_path: Path
) -> None:
    prior = PatientPrior.fit(infos_from_records(train_records), np.array([r.label for r in train_records]))
    prior.weight = 0.5
    old_face = PatientInfo(age=78, sex="male", site="face")
    young_back = PatientInfo(age=25, sex="female", site="back")
    ratio = prior.log_ratio([PatientInfo(), old_face, young_back])
    assert np.allclose(ratio[0], 0.0)
    c = {name: HAM_CLASSES.index(name) for name in HAM_CLASSES}
    # Facts of HAM10000 (and of dermatology): keratinocyte lesions on old sun-exposed faces, naevi on young trunks.
    assert ratio[1, c["bcc"]] > 0.5 and ratio[1, c["akiec"]] > 0.5 and ratio[1, c["nv"]] < 0
    assert ratio[2, c["nv"]] > 0 and ratio[2, c["akiec"]] < 0
    prior.save(tmp_path)
    again = PatientPrior.load(tmp_path)
    assert again is not None and again.weight == 0.5
    assert np.allclose(again.shift([old_face]), 0.5 * ratio[1], atol=1e-4)
    assert PatientPrior.load(tmp_path / "elsewhere") is None


def test_shipped_model_uses_details_with_its_own_calibration(ham_dir: Path) -> None:
    from dermchat.classifier.predictor import Predictor

    predictor = Predictor(weights_dir_or_skip())
    if not predictor.uses_patient_info:
        pytest.skip("these weights were calibrated without patient details")
    block = predictor.calibration["with_patient_info"]
    assert 0.0 < block["weight"] <= 2.0 and 0.0 < block["melanoma"]["threshold"] < 1.0
    with Image.open(ham_dir / "images" / "ISIC_0027419.jpg") as im:
        image = im.convert("RGB")
    plain = predictor.predict_image(image)
    blank = predictor.predict_image(image, patient=PatientInfo())
    assert np.allclose(plain.probabilities, blank.probabilities)
    assert blank.extra["patient_info_used"] is None
    young = predictor.predict_image(image, patient=PatientInfo(age=25, sex="female", site="lower extremity"))
    old = predictor.predict_image(image, patient=PatientInfo(age=80, sex="male", site="scalp"))
    assert young.extra["patient_info_used"] == "age 25, female, lower extremity"
    nv, akiec = HAM_CLASSES.index("nv"), HAM_CLASSES.index("akiec")
    assert young.probabilities[nv] > old.probabilities[nv]
    assert old.probabilities[akiec] > young.probabilities[akiec]
    assert np.isclose(young.probabilities.sum(), 1.0)
    # The out-of-distribution gate looks at the image alone.
    assert young.mahalanobis == plain.mahalanobis and young.out_of_distribution == plain.out_of_distribution
    assert young.melanoma_threshold == pytest.approx(block["melanoma"]["threshold"])


def test_turn_passes_the_details_to_the_diagnoser(ham_dir: Path, tmp_path: Path) -> None:
    from dermchat.engine import DermChat

    weights_dir_or_skip()
    app = DermChat()
    image = ham_dir / "images" / "ISIC_0027419.jpg"
    result = app.run_turn_sync(
        TurnRequest(
            image=str(image),
            question="what is this?",
            audience="clinician",
            workdir=tmp_path,
            settings_overrides={"diagnoser": "ham-cnn"},
            patient=PatientDetails(age=80, sex="male", body_site="scalp"),
        )
    )
    assert result.diagnosis is not None and not result.diagnosis.abstained
    assert result.diagnosis.extra["patient_info_used"] == "age 80, male, scalp"
    assert "age 80, male, scalp" in result.diagnosis.rationale
    assert not any(n.startswith("Not taken into account") for n in result.notices)
    typo = app.run_turn_sync(
        TurnRequest(
            image=str(image),
            question="what is this?",
            workdir=tmp_path,
            settings_overrides={"diagnoser": "ham-cnn", "explainer": None, "references": []},
            patient=PatientDetails(age="500", sex="x", body_site="zzz"),
        )
    )
    assert typo.diagnosis is not None and typo.diagnosis.extra["patient_info_used"] is None
    note = next(n for n in typo.notices if n.startswith("Not taken into account"))
    assert "age '500'" in note and "sex 'x'" in note and "body site 'zzz'" in note
