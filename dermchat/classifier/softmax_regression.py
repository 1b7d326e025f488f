"""Multinomial logistic regression by L-BFGS: what the patient-details prior and the classifier-head refit fit.

Why a module of its own: both need the same deterministic, dependency-light fit (numpy + scipy, no scikit-learn),
and one copy of the loss and its gradient is easier to trust than two.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class SoftmaxRegression:
    """Fitted weights: logits = x @ coef + intercept."""

    coef: np.ndarray
    """(features, classes)"""
    intercept: np.ndarray
    """(classes,)"""
    converged: bool


def fit_softmax_regression(
    x: np.ndarray, labels: np.ndarray, n_classes: int, l2: float, penalty_rows: int, max_iter: int = 500
) -> SoftmaxRegression:
    """Minimise mean cross-entropy over the rows of `x` + 0.5 * l2 * |coef|^2 / penalty_rows (the intercept is not
    penalised), from zero weights, so the same data always gives the same weights.

    `penalty_rows` sets what the strength is counted against: the number of distinct examples (scikit-learn's
    ``C`` is ``1 / l2`` when it equals the number of rows)."""
    from scipy.optimize import minimize
    from scipy.special import log_softmax, softmax

    n, d = x.shape
    k = n_classes
    onehot = np.eye(k)[np.asarray(labels, dtype=int)]

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w = theta[: d * k].reshape(d, k)
        b = theta[d * k :]
        z = x @ w + b
        nll = -(onehot * log_softmax(z, axis=1)).sum() / n + 0.5 * l2 * (w * w).sum() / penalty_rows
        g = (softmax(z, axis=1) - onehot) / n
        return float(nll), np.concatenate([(x.T @ g + l2 * w / penalty_rows).ravel(), g.sum(axis=0)])

    res = minimize(loss, np.zeros(d * k + k), jac=True, method="L-BFGS-B", options={"maxiter": max_iter})
    return SoftmaxRegression(res.x[: d * k].reshape(d, k), res.x[d * k :], bool(res.success))
