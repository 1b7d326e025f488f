"""Classification metrics in numpy (no scikit-learn dependency), shared by training and evaluation.

Balanced accuracy and macro figures matter more than accuracy here: nv is two thirds of HAM10000,
so a model that says "nevus" to everything is 67% accurate and useless.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy.stats import rankdata


def confusion(labels: np.ndarray, preds: np.ndarray, n_classes: int) -> np.ndarray:
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (labels, preds), 1)
    return cm


def accuracy(labels: np.ndarray, preds: np.ndarray) -> float:
    return float(np.mean(labels == preds)) if len(labels) else float("nan")


def per_class_sensitivity(cm: np.ndarray) -> np.ndarray:
    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(cm) / np.maximum(support, 1), np.nan)


def per_class_specificity(cm: np.ndarray) -> np.ndarray:
    total = cm.sum()
    tp = np.diag(cm)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    tn = total - tp - fp - fn
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(tn + fp > 0, tn / np.maximum(tn + fp, 1), np.nan)


def balanced_accuracy(labels: np.ndarray, preds: np.ndarray, n_classes: int) -> float:
    """Mean recall over the classes present in `labels`."""
    sens = per_class_sensitivity(confusion(labels, preds, n_classes))
    present = ~np.isnan(sens)
    return float(np.mean(sens[present])) if present.any() else float("nan")


def macro_f1(labels: np.ndarray, preds: np.ndarray, n_classes: int) -> float:
    cm = confusion(labels, preds, n_classes)
    tp = np.diag(cm).astype(float)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    present = cm.sum(axis=1) > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0)
    return float(np.mean(f1[present])) if present.any() else float("nan")


def binary_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """ROC AUC by the Mann-Whitney rank statistic (ties get average ranks)."""
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def per_class_auc(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return np.array([binary_auc(probs[:, k], labels == k) for k in range(probs.shape[1])])


def macro_auc(probs: np.ndarray, labels: np.ndarray) -> float:
    aucs = per_class_auc(probs, labels)
    return float(np.nanmean(aucs)) if not np.all(np.isnan(aucs)) else float("nan")


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """Top-label ECE with equal-width confidence bins."""
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    ece = 0.0
    for lo, hi in itertools.pairwise(edges):
        in_bin = (conf > lo) & (conf <= hi)
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - conf[in_bin].mean())
    return float(ece)


def reliability_bins(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> list[dict[str, float]]:
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    out = []
    for lo, hi in itertools.pairwise(edges):
        in_bin = (conf > lo) & (conf <= hi)
        if in_bin.any():
            out.append(
                {
                    "lo": float(lo),
                    "hi": float(hi),
                    "n": int(in_bin.sum()),
                    "confidence": float(conf[in_bin].mean()),
                    "accuracy": float(correct[in_bin].mean()),
                }
            )
    return out


def summary(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The headline figures used for model selection and in the training log."""
    preds = probs.argmax(axis=1)
    k = probs.shape[1]
    return {
        "accuracy": accuracy(labels, preds),
        "balanced_accuracy": balanced_accuracy(labels, preds, k),
        "macro_f1": macro_f1(labels, preds, k),
        "macro_auc": macro_auc(probs, labels),
    }


def selection_score(figures: dict[str, float]) -> float:
    """What chooses between candidates on the validation lesions (the epoch in training, the last layer in
    `refit-head`): the mean of accuracy, balanced accuracy and macro AUC, so neither the common nor the rare
    classes nor the ranking alone decide."""
    return float(np.nanmean([figures["accuracy"], figures["balanced_accuracy"], figures["macro_auc"]]))
