"""Post-hoc calibration on the calibration split (lesions never seen in training or model selection).

- Temperature scaling: one scalar T fitted by NLL, so probabilities mean what they say.
- Split-conformal prediction sets (LAC score 1 - p_true): with the calibration scores stored, any
  coverage can be asked for later; the default is 90%.
- Melanoma threshold: the highest P(mel) threshold that still flags `target_sensitivity` of the
  calibration melanomas (sensitivity first: a missed melanoma costs far more than a referral).
- Patient details (optional age/sex/site, see `patient_info`): a prior fitted on the training split's
  metadata, its weight and a second set of the quantities above for logits shifted by it.
- Out-of-distribution gate: an energy score (from the logits) and a Mahalanobis distance of the
  pooled embedding to the training classes; either above its calibration quantile means
  "out of my depth". The Mahalanobis part catches inputs unlike any dermoscopic frame (documents,
  walls, noise), where logits alone can still be confidently wrong.

`python -m dermchat.classifier.calibrate --weights DIR [--data DIR]` redoes this for saved weights.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any

import numpy as np

from dermchat.classifier import HAM_CLASSES
from dermchat.classifier.patient_info import PRIOR_FILE, PatientPrior, infos_from_records

CALIBRATION_FILE = "calibration.json"
OOD_FILE = "ood_stats.npz"
DEFAULT_COVERAGE = 0.9
MEL_TARGET_SENSITIVITY = 0.9
OOD_QUANTILE = 0.995


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """Minimise the NLL over log T (1-D, convex enough for a bounded scalar search)."""
    from scipy.optimize import minimize_scalar
    from scipy.special import log_softmax

    def nll(log_t: float) -> float:
        lp = log_softmax(logits / math.exp(log_t), axis=1)
        return float(-lp[np.arange(len(labels)), labels].mean())

    res = minimize_scalar(nll, bounds=(math.log(0.05), math.log(20.0)), method="bounded")
    return float(math.exp(res.x))


def fit_bias_temperature(logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """Bias-corrected temperature scaling (Alexandari et al., ICML 2020): T plus one bias per class.

    Why: the class-weighted training loss deliberately shifts the model's priors towards rare
    classes; a per-class bias fitted by NLL on untouched lesions undoes that shift for the
    probabilities (it cannot change the ranking within a class, so AUC is unaffected).
    """
    from scipy.optimize import minimize
    from scipy.special import log_softmax

    k = logits.shape[1]
    rows = np.arange(len(labels))

    def nll(theta: np.ndarray) -> float:
        b = np.concatenate([[0.0], theta[1:]])
        lp = log_softmax(logits / math.exp(theta[0]) + b, axis=1)
        return float(-lp[rows, labels].mean())

    start = np.zeros(k)
    start[0] = math.log(fit_temperature(logits, labels))
    res = minimize(nll, start, method="L-BFGS-B", bounds=[(math.log(0.05), math.log(20.0))] + [(-5.0, 5.0)] * (k - 1))
    return float(math.exp(res.x[0])), np.concatenate([[0.0], res.x[1:]])


def softmax(logits: np.ndarray, temperature: float = 1.0, bias: np.ndarray | None = None) -> np.ndarray:
    from scipy.special import softmax as sp_softmax

    z = logits / temperature
    if bias is not None:
        z = z + bias
    probs: np.ndarray = sp_softmax(z, axis=1)
    return probs


def energy(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Free energy -T*logsumexp(z/T): higher means less like the training data."""
    from scipy.special import logsumexp

    free_energy: np.ndarray = -temperature * logsumexp(logits / temperature, axis=1)
    return free_energy


def conformal_scores(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    scores: np.ndarray = 1.0 - probs[np.arange(len(labels)), labels]
    return scores


def conformal_threshold(scores: np.ndarray, coverage: float) -> float:
    """Split-conformal quantile: ceil((n+1)*coverage)/n empirical quantile of the scores."""
    if not 0.0 < coverage < 1.0:
        raise ValueError("coverage must be in (0, 1)")
    n = len(scores)
    if n == 0:
        return 1.0
    level = min(1.0, math.ceil((n + 1) * coverage) / n)
    return float(np.quantile(scores, level, method="higher"))


def prediction_sets(probs: np.ndarray, threshold: float) -> np.ndarray:
    """Boolean (N, K): class k is in the set when 1 - p_k <= threshold; never empty (top-1 kept)."""
    sets = (1.0 - probs) <= threshold
    sets[np.arange(len(probs)), probs.argmax(axis=1)] = True
    return sets


def melanoma_threshold(p_mel: np.ndarray, is_mel: np.ndarray, target: float) -> float:
    positives = np.sort(p_mel[is_mel])[::-1]
    if len(positives) == 0:
        return 0.5
    k = max(1, math.ceil(target * len(positives)))
    return float(positives[k - 1])


class Mahalanobis:
    """Class-conditional Gaussians with one shared, shrunk covariance (Lee et al., 2018)."""

    def __init__(self, means: np.ndarray, precision: np.ndarray) -> None:
        self.means = means
        self.precision = precision
        self._means_term = np.einsum("kd,de,ke->k", means, precision, means)  # m'Pm, once

    @classmethod
    def fit(cls, emb: np.ndarray, labels: np.ndarray, n_classes: int, shrink: float = 0.1) -> Mahalanobis:
        d = emb.shape[1]
        means = np.zeros((n_classes, d))
        centred = []
        for k in range(n_classes):
            rows = emb[labels == k]
            if len(rows):
                means[k] = rows.mean(axis=0)
                centred.append(rows - means[k])
        c = np.concatenate(centred)
        cov = c.T @ c / max(len(c) - 1, 1)
        cov = (1 - shrink) * cov + shrink * np.trace(cov) / d * np.eye(d)
        return cls(means, np.linalg.inv(cov))

    def score(self, emb: np.ndarray) -> np.ndarray:
        """Smallest squared distance to a class mean. Expanded as e'Pe - 2e'Pm + m'Pm so the d x d precision is
        applied once per image, not once per class (7x fewer operations with 1280-d backbone features)."""
        projected = emb @ self.precision
        own = np.einsum("nd,nd->n", projected, emb)
        cross = projected @ self.means.T
        distances: np.ndarray = (own[:, None] - 2 * cross + self._means_term[None, :]).min(axis=1)
        return distances


def probability_calibration(
    logits: np.ndarray, labels: np.ndarray, coverage: float, class_bias: bool
) -> tuple[dict[str, Any], np.ndarray]:
    """Temperature (+ bias), conformal threshold and melanoma threshold for one kind of logits.

    Used twice: for the image-only logits and for logits shifted by the patient details, which
    need their own temperature and thresholds (the shift changes how peaked the outputs are).
    """
    from dermchat.classifier.metrics import expected_calibration_error

    k = len(HAM_CLASSES)
    if class_bias:
        t, bias = fit_bias_temperature(logits, labels)
    else:
        t, bias = fit_temperature(logits, labels), np.zeros(k)
    probs = softmax(logits, t, bias)
    scores = conformal_scores(probs, labels)
    qhat = conformal_threshold(scores, coverage)
    sets = prediction_sets(probs, qhat)
    mel = HAM_CLASSES.index("mel")
    is_mel = labels == mel
    mel_thr = melanoma_threshold(probs[:, mel], is_mel, MEL_TARGET_SENSITIVITY)
    flagged = probs[:, mel] >= mel_thr
    block = {
        "temperature": t,
        "class_bias": [float(x) for x in bias],
        "conformal": {
            "method": "LAC (1 - p_true), top-1 always kept",
            "coverage": coverage,
            "threshold": qhat,
            "in_sample_coverage": float(sets[np.arange(len(labels)), labels].mean()),
            "in_sample_mean_set_size": float(sets.sum(axis=1).mean()),
        },
        "melanoma": {
            "threshold": mel_thr,
            "target_sensitivity": MEL_TARGET_SENSITIVITY,
            "calib_sensitivity": float(flagged[is_mel].mean()) if is_mel.any() else None,
            "calib_specificity": float((~flagged[~is_mel]).mean()) if (~is_mel).any() else None,
        },
        "calib_metrics": {
            "ece_before": expected_calibration_error(softmax(logits), labels),
            "ece_after": expected_calibration_error(probs, labels),
        },
    }
    return block, np.sort(scores).astype(np.float32)


def fit_patient_weight(logits: np.ndarray, log_ratio: np.ndarray, labels: np.ndarray, class_bias: bool) -> float:
    """Weight of the patient-details log-ratio that minimises the calibration NLL (after re-fitting T)."""
    from scipy.optimize import minimize_scalar
    from scipy.special import log_softmax

    rows = np.arange(len(labels))

    def nll(w: float) -> float:
        z = logits + w * log_ratio
        t, b = fit_bias_temperature(z, labels) if class_bias else (fit_temperature(z, labels), 0.0)
        return float(-log_softmax(z / t + b, axis=1)[rows, labels].mean())

    return float(minimize_scalar(nll, bounds=(0.0, 2.0), method="bounded", options={"xatol": 0.01}).x)


def calibrate_arrays(
    logits: np.ndarray,
    labels: np.ndarray,
    embeddings: np.ndarray,
    train_embeddings: np.ndarray,
    train_labels: np.ndarray,
    coverage: float = DEFAULT_COVERAGE,
    class_bias: bool = False,
    patient_log_ratio: np.ndarray | None = None,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """All calibration quantities from calibration-split logits/embeddings (pure numpy).

    With `patient_log_ratio` (the calibration rows' age/sex/site evidence, see `patient_info`), a second
    block `with_patient_info` holds the fitted weight and its own temperature and thresholds.
    """
    k = len(HAM_CLASSES)
    block, scores = probability_calibration(logits, labels, coverage, class_bias)
    maha = Mahalanobis.fit(train_embeddings, train_labels, k)
    e = energy(logits, block["temperature"])
    m = maha.score(embeddings)
    e_thr = float(np.quantile(e, OOD_QUANTILE))
    m_thr = float(np.quantile(m, OOD_QUANTILE))
    abstain = (e > e_thr) | (m > m_thr)
    cal = {
        "classes": list(HAM_CLASSES),
        "split": "calib",
        "n": len(labels),
        **block,
        "ood": {
            "quantile": OOD_QUANTILE,
            "energy_threshold": e_thr,
            "mahalanobis_threshold": m_thr,
            "calib_abstention_rate": float(abstain.mean()),
        },
    }
    arrays = {
        "conformal_scores": scores,
        "maha_means": maha.means.astype(np.float32),
        "maha_precision": maha.precision.astype(np.float32),
    }
    if patient_log_ratio is not None:
        w = fit_patient_weight(logits, patient_log_ratio, labels, class_bias)
        pblock, pscores = probability_calibration(logits + w * patient_log_ratio, labels, coverage, class_bias)
        cal["with_patient_info"] = {"weight": w, **pblock}
        arrays["conformal_scores_patient"] = pscores
    return cal, arrays


def calibrate_dir(
    weights_dir: Path,
    data_dir: Path,
    pixels: np.ndarray | None = None,
    image_ids: Sequence[str] | None = None,
    coverage: float = DEFAULT_COVERAGE,
    class_bias: bool = False,
    device: str = "cpu",
) -> dict[str, Any]:
    """Calibrate the model saved in `weights_dir` on its recorded calibration split (its forward passes on `device`)."""
    from dermchat.classifier.data import load_pixels, read_metadata, read_split
    from dermchat.classifier.model import batched_inference, load_model
    from dermchat.classifier.train import MODEL_FILE, SPLIT_FILE

    weights_dir = Path(weights_dir)
    split = read_split(weights_dir / SPLIT_FILE)
    records = read_metadata(data_dir)
    by_id = {r.image_id: r for r in records}
    model, _ = load_model(weights_dir / MODEL_FILE)
    model.to(device)
    if pixels is None or image_ids is None:
        image_ids = [r.image_id for r in records]
        pixels, _ = load_pixels(data_dir, image_ids, with_masks=True, size=model.config.input_size)
    index = {i: n for n, i in enumerate(image_ids)}
    parts: dict[str, ModelOutputs] = {}
    for name in ("train", "calib"):
        ids = [i for i in split[name] if i in index]
        if not ids:
            raise ValueError(f"no {name} images of {weights_dir / SPLIT_FILE} found in {data_dir}")
        out = batched_inference(model, pixels[[index[i] for i in ids]], progress=f"calibration: {name} images")
        parts[name] = ModelOutputs(
            ids,
            out["logits"].numpy().astype(np.float64),
            out["embedding"].numpy().astype(np.float64),
            np.array([by_id[i].label for i in ids]),
        )
    return write_calibration(weights_dir, parts, split, by_id, coverage, class_bias)


@dataclass
class ModelOutputs:
    """The network's logits and pooled features for some images of one split part, with their labels."""

    ids: list[str]
    logits: np.ndarray
    embeddings: np.ndarray
    labels: np.ndarray


def write_calibration(
    weights_dir: Path,
    parts: dict[str, ModelOutputs],
    split: dict[str, list[str]],
    by_id: dict[str, Any],
    coverage: float = DEFAULT_COVERAGE,
    class_bias: bool = False,
) -> dict[str, Any]:
    """Calibrate from the outputs on the training (OOD statistics) and calibration parts, and write calibration.json,
    the OOD arrays and the patient prior (fitted on the split's training rows) into `weights_dir`."""
    train, calib = parts["train"], parts["calib"]
    prior = fit_patient_prior([by_id[i] for i in split["train"] if i in by_id])
    log_ratio = None
    if prior is not None:  # row for row with the calibration logits
        log_ratio = prior.log_ratio(infos_from_records([by_id[i] for i in calib.ids]))
    cal, arrays = calibrate_arrays(
        calib.logits, calib.labels, calib.embeddings, train.embeddings, train.labels, coverage, class_bias, log_ratio
    )
    (weights_dir / CALIBRATION_FILE).write_text(json.dumps(cal, indent=1))
    # numpy's stub matches the **arrays keywords against its own `allow_pickle: bool`
    np.savez_compressed(weights_dir / OOD_FILE, **arrays)  # type: ignore[arg-type]
    (weights_dir / PRIOR_FILE).unlink(missing_ok=True)
    if prior is not None:
        prior.weight = cal["with_patient_info"]["weight"]
        prior.save(weights_dir)
    return cal


def fit_patient_prior(train_records: Sequence[Any]) -> PatientPrior | None:
    """p(dx | age, sex, site) from the training rows; None when the folder gives no such details."""
    infos = infos_from_records(train_records)
    if not any(i.given for i in infos):
        return None
    return PatientPrior.fit(infos, np.array([r.label for r in train_records]))


def main(argv: Sequence[str] | None = None) -> int:
    from dermchat.classifier.data import DataError, default_data_dir

    p = argparse.ArgumentParser(prog="python -m dermchat.classifier.calibrate", description=__doc__.splitlines()[0])
    p.add_argument("--weights", type=Path, required=True)
    p.add_argument("--data", type=Path, default=None)
    p.add_argument("--coverage", type=float, default=DEFAULT_COVERAGE)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--class-bias",
        action="store_true",
        help="bias-corrected temperature scaling (T + per-class bias) instead of T alone",
    )
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    try:
        cal = calibrate_dir(
            args.weights, args.data or default_data_dir(), coverage=args.coverage, class_bias=args.class_bias
        )
    except (DataError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    log = Path(args.weights) / "training_log.txt"
    if log.is_file():  # keep the weights folder's history complete when calibration is redone
        from datetime import datetime

        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        with log.open("a") as fh:
            fh.write(
                f"{stamp} recalibrated: python -m dermchat.classifier.calibrate {' '.join(argv or sys.argv[1:])}; "
                f"temperature {cal['temperature']:.3f}, class bias {'on' if args.class_bias else 'off'}, "
                f"conformal threshold {cal['conformal']['threshold']:.4f}, "
                f"melanoma threshold {cal['melanoma']['threshold']:.4f}\n"
            )
    print(json.dumps(cal, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
