"""``refit-head``: the last layer learnt again on frozen features, chosen on the validation lesions, folded into the
network and calibrated; the softmax regression it shares with the patient-details prior."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from core_helpers import tiny_training_args

from dermchat.classifier import HAM_CLASSES
from dermchat.classifier.softmax_regression import fit_softmax_regression


def imbalanced_clusters(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seven overlapping Gaussian classes in 16 dimensions, the first holding 70% of the rows (like naevi)."""
    rng = np.random.default_rng(seed)
    shares = np.array([0.7, 0.1, 0.06, 0.05, 0.04, 0.03, 0.02])
    labels = rng.choice(len(HAM_CLASSES), size=n, p=shares)
    centres = np.random.default_rng(99).normal(0, 1.0, size=(len(HAM_CLASSES), 16))
    return centres[labels] + rng.normal(0, 2.0, size=(n, 16)), labels


def test_softmax_regression_reaches_its_optimum_and_the_penalty_shrinks_it() -> None:
    x, y = imbalanced_clusters(600, 0)
    loose = fit_softmax_regression(x, y, len(HAM_CLASSES), l2=1.0, penalty_rows=len(x))
    tight = fit_softmax_regression(x, y, len(HAM_CLASSES), l2=300.0, penalty_rows=len(x))
    assert loose.converged and tight.converged
    assert np.linalg.norm(tight.coef) < 0.5 * np.linalg.norm(loose.coef)
    # at the optimum the gradient vanishes: the mean predicted probability of each class equals its frequency
    z = x @ loose.coef + loose.intercept
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(p.mean(axis=0), np.bincount(y, minlength=len(HAM_CLASSES)) / len(y), atol=1e-3)
    again = fit_softmax_regression(x, y, len(HAM_CLASSES), l2=1.0, penalty_rows=len(x))
    np.testing.assert_array_equal(again.coef, loose.coef)  # deterministic: same data, same weights


def test_the_prior_power_trades_accuracy_for_balanced_accuracy_and_the_best_score_is_chosen() -> None:
    from dermchat.classifier.refit_head import Features, fit_heads

    x, y = imbalanced_clusters(3000, 1)
    xv, yv = imbalanced_clusters(1500, 2)
    xc, yc = imbalanced_clusters(1500, 3)
    raw, raw_val = x * 3 + 5, xv * 3 + 5  # features on another scale than the standardised ones the fit sees
    head, table = fit_heads(Features(raw, y, raw_val, yv, xc * 3 + 5, yc), [10.0, 1000.0], [0.0, 1.0])
    by_tau = {row["prior_power"]: row for row in table if row["l2"] == 10.0}
    assert by_tau[1.0]["balanced_accuracy"] > by_tau[0.0]["balanced_accuracy"] + 0.03
    assert by_tau[0.0]["accuracy"] > by_tau[1.0]["accuracy"]
    for row in table:  # each head was calibrated (temperature and sets from the calibration rows) before scoring
        assert 0 <= row["ece"] <= 1 and 1 <= row["mean_set_size"] <= len(HAM_CLASSES)
        assert row["calibrated"] == (row["ece"] <= 0.03 and row["mean_set_size"] <= 1.5)
    eligible = [row for row in table if row["calibrated"]] or table
    best = max(eligible, key=lambda row: row["score"])
    assert (head.l2, head.prior_power) == (best["l2"], best["prior_power"])
    assert [row for row in table if row.get("chosen")] == [best]
    # standardisation and the prior are folded into the layer: raw features in, the fitted model's logits out
    mean, std = raw.mean(axis=0), raw.std(axis=0) + 1e-6
    fit = fit_softmax_regression((raw - mean) / std, y, len(HAM_CLASSES), head.l2, penalty_rows=len(raw))
    log_prior = np.log(np.bincount(y, minlength=len(HAM_CLASSES)) / len(y))
    expected = ((raw_val - mean) / std) @ fit.coef + fit.intercept - head.prior_power * log_prior
    np.testing.assert_allclose(head.logits(raw_val), expected, atol=1e-8)


@pytest.fixture(scope="module")
def tiny_source(ham_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dermchat.classifier.train import main

    out = tmp_path_factory.mktemp("refit") / "source"
    assert main([*tiny_training_args(ham_dir, max_batches=2), "--out", str(out)]) == 0
    return out


def test_refit_head_changes_only_the_last_layer_and_leaves_a_calibrated_folder(
    tiny_source: Path, ham_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dermchat.classifier.model import load_model
    from dermchat.classifier.predictor import Predictor
    from dermchat.classifier.refit_head import REPORT_FILE, main

    monkeypatch.setenv("DERMCHAT_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "refit"
    argv = ["--weights", str(tiny_source), "--out", str(out), "--data", str(ham_dir), "--threads", "1"]
    assert main([*argv, "--l2", "10", "1000", "--prior-power", "0", "1"]) == 0
    for name in ("model.pt", "model.onnx", "calibration.json", "ood_stats.npz", "split.json", REPORT_FILE):
        assert (out / name).is_file(), name
    assert (out / "split.json").read_bytes() == (tiny_source / "split.json").read_bytes()
    report = json.loads((out / REPORT_FILE).read_text())
    assert len(report["grid"]) == 4 and report["l2"] in (10, 1000) and report["prior_power"] in (0, 1)
    log = (out / "training_log.txt").read_text()
    assert "epoch 1:" in log and "chosen on the validation lesions" in log  # the source's history is kept
    before, _ = load_model(tiny_source / "model.pt")
    after, extra = load_model(out / "model.pt")
    assert extra["head_refit"] == {"l2": report["l2"], "prior_power": report["prior_power"]}
    old, new = before.state_dict(), after.state_dict()
    changed = sorted(k for k in old if not np.array_equal(old[k].numpy(), new[k].numpy()))
    assert changed == ["net._fc.bias", "net._fc.weight"]
    predictor = Predictor(out)
    probs = predictor.analyse(*predictor.forward_frames(np.zeros((2, 150, 200, 3), dtype=np.uint8)))["probs"]
    assert np.allclose(probs.sum(axis=1), 1.0)


def test_refit_head_refuses_a_used_folder_and_a_network_trained_on_its_validation_lesions(
    tiny_source: Path, ham_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dermchat.classifier.refit_head import main

    used = tmp_path / "used"
    used.mkdir()
    (used / "notes.txt").write_text("mine")
    assert main(["--weights", str(tiny_source), "--out", str(used), "--data", str(ham_dir)]) == 2
    assert "not an empty folder" in capsys.readouterr().err and (used / "notes.txt").read_text() == "mine"
    folded = tmp_path / "folded"
    folded.mkdir()
    for name in ("model.pt", "split.json"):
        (folded / name).write_bytes((tiny_source / name).read_bytes())
    split = json.loads((folded / "split.json").read_text())
    (folded / "split.json").write_text(json.dumps({**split, "trained_on": ["train", "val"]}))
    assert main(["--weights", str(folded), "--out", str(tmp_path / "new"), "--data", str(ham_dir)]) == 2
    assert "trained on its validation lesions" in capsys.readouterr().err


def test_refit_head_reads_features_through_torch_when_the_folder_has_no_matching_onnx_graph(
    tiny_source: Path, ham_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dermchat.classifier.refit_head import main

    monkeypatch.setenv("DERMCHAT_CACHE_DIR", str(tmp_path / "cache"))
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("model.pt", "split.json"):  # no model.onnx
        (bare / name).write_bytes((tiny_source / name).read_bytes())
    out = tmp_path / "refit"
    argv = ["--weights", str(bare), "--out", str(out), "--data", str(ham_dir), "--l2", "100", "--prior-power", "0.5"]
    assert main([*argv, "--threads", "1"]) == 0
    log = (out / "training_log.txt").read_text()
    assert "features from torch (no model.onnx" in log and "l2 100 tau 0.5" in log
    assert (out / "model.onnx").is_file() and (out / "calibration.json").is_file()
