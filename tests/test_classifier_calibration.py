"""Calibration maths on synthetic data, metrics against hand-computed values, and conformal coverage of
the shipped model on held-out (validation-split) lesions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from classifier_fixtures import weights_dir_or_skip

from dermchat.classifier import HAM_CLASSES
from dermchat.classifier import calibrate as C
from dermchat.classifier import metrics as M


def test_temperature_scaling_recovers_a_known_temperature() -> None:
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 2.0, size=(4000, 7))
    probs = C.softmax(true_logits)
    labels = np.array([rng.choice(7, p=p) for p in probs])
    fitted = C.fit_temperature(true_logits * 2.5, labels)  # logits made 2.5x over-confident
    assert fitted == pytest.approx(2.5, rel=0.1)


def test_bias_corrected_temperature_undoes_a_prior_shift() -> None:
    rng = np.random.default_rng(4)
    true_logits = rng.normal(0, 2.0, size=(6000, 4))
    labels = np.array([rng.choice(4, p=p) for p in C.softmax(true_logits)])
    shift = np.array([0.0, 1.0, -1.0, 0.5])  # what a class-weighted loss does to the logits
    t, bias = C.fit_bias_temperature((true_logits + shift) * 2.0, labels)
    assert t == pytest.approx(2.0, rel=0.1)
    assert np.allclose(bias, -(shift - shift[0]), atol=0.15)


def test_conformal_threshold_gives_the_promised_coverage_on_fresh_data() -> None:
    rng = np.random.default_rng(1)

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        probs = C.softmax(rng.normal(0, 1.5, size=(n, 7)))
        labels = np.array([rng.choice(7, p=p) for p in probs])
        return probs, labels

    cal_p, cal_y = draw(2000)
    q = C.conformal_threshold(C.conformal_scores(cal_p, cal_y), 0.9)
    test_p, test_y = draw(4000)
    sets = C.prediction_sets(test_p, q)
    coverage = sets[np.arange(len(test_y)), test_y].mean()
    assert 0.88 <= coverage <= 0.93
    assert sets.any(axis=1).all()  # never an empty set


def test_melanoma_threshold_reaches_the_target_sensitivity() -> None:
    rng = np.random.default_rng(2)
    p_mel = rng.uniform(size=500)
    is_mel = rng.uniform(size=500) < p_mel  # higher p, more often melanoma
    thr = C.melanoma_threshold(p_mel, is_mel, 0.9)
    sens = (p_mel[is_mel] >= thr).mean()
    assert sens >= 0.9 and (p_mel[is_mel] >= thr + 1e-9).mean() < 0.9 + 1 / is_mel.sum() + 1e-9


def test_mahalanobis_scores_far_points_higher() -> None:
    rng = np.random.default_rng(3)
    emb = rng.normal(size=(700, 16))
    labels = rng.integers(0, 7, size=700)
    maha = C.Mahalanobis.fit(emb, labels, 7)
    near = maha.score(rng.normal(size=(50, 16)))
    far = maha.score(rng.normal(size=(50, 16)) + 8.0)
    assert far.min() > near.max()


def test_metrics_match_hand_computed_values() -> None:
    labels = np.array([0, 0, 1, 1, 2, 2])
    preds = np.array([0, 1, 1, 1, 2, 0])
    assert M.accuracy(labels, preds) == pytest.approx(4 / 6)
    assert M.balanced_accuracy(labels, preds, 3) == pytest.approx((0.5 + 1.0 + 0.5) / 3)
    assert M.binary_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([False, False, True, True])) == pytest.approx(0.75)
    confident_wrong = np.array([[0.9, 0.1], [0.9, 0.1]])
    assert M.expected_calibration_error(confident_wrong, np.array([1, 1])) == pytest.approx(0.9)


def test_shipped_conformal_sets_cover_held_out_lesions_near_target(ham_dir: Path) -> None:
    """Every 3rd image of the validation split (lesions used neither for training nor calibration)."""
    from dermchat.classifier.data import load_pixels, read_metadata
    from dermchat.classifier.predictor import Predictor

    weights = weights_dir_or_skip()
    split = json.loads((weights / "split.json").read_text())
    val = split["val"][::3]
    labels_by_id = {r.image_id: r.label for r in read_metadata(ham_dir)}
    predictor = Predictor(weights)
    frames, _ = load_pixels(ham_dir, val, with_masks=False, use_cache=False, size=predictor.input_size)
    a = predictor.analyse(*predictor.forward_frames(frames))
    labels = np.array([labels_by_id[i] for i in val])
    coverage = a["sets"][np.arange(len(labels)), labels].mean()
    assert len(labels) > 300
    assert 0.85 <= coverage <= 0.96, coverage
    assert a["sets"].sum(axis=1).mean() < len(HAM_CLASSES) / 2
    assert a["ood"].mean() < 0.05  # real dermoscopic images are rarely flagged as out of distribution
