"""Turn decision values into probabilities (Platt scaling) and choose one threshold per label."""
from __future__ import annotations

import numpy as np

MIN_THRESHOLD, MAX_THRESHOLD = 0.05, 0.95


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function (through tanh: no overflow, no masking)."""
    return 0.5 + 0.5 * np.tanh(0.5 * np.asarray(z, dtype=float))


def fit_platt(decision: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Fit p = sigmoid(a*d + c) per label on out-of-fold decision values; returns (n_labels, 2).

    The per-label classifiers are class-weighted, so their raw scores over-state rare labels;
    Platt scaling on held-out scores gives back probabilities that match observed frequencies.
    """
    from sklearn.linear_model import LogisticRegression

    params = np.tile([1.0, 0.0], (decision.shape[1], 1))
    for j in range(decision.shape[1]):
        yj = y[:, j]
        if yj.min() == yj.max():
            continue
        lr = LogisticRegression(C=1e4, solver="lbfgs")
        lr.fit(decision[:, [j]], yj)
        params[j] = lr.coef_[0, 0], lr.intercept_[0]
    return params


def apply_platt(decision: np.ndarray, params: np.ndarray) -> np.ndarray:
    """Calibrated probabilities for decision values of shape (n, n_labels)."""
    return sigmoid(decision * params[:, 0] + params[:, 1])


def best_thresholds(proba: np.ndarray, y: np.ndarray, *, beta: float = 1.0) -> np.ndarray:
    """Per label, the cut on calibrated probability that maximises F-beta on held-out scores.

    The cut sits midway between the last accepted and first rejected score, clamped to
    [0.05, 0.95] so a tiny label cannot end with a threshold of 0 or 1.
    """
    thresholds = np.full(proba.shape[1], 0.5)
    b2 = beta * beta
    for j in range(proba.shape[1]):
        p, t = proba[:, j], y[:, j].astype(bool)
        if not t.any():
            continue
        order = np.argsort(-p, kind="mergesort")
        ps, ts = p[order], t[order]
        tp = np.cumsum(ts)
        k = np.arange(1, len(ps) + 1)
        f = (1 + b2) * tp / (k + b2 * t.sum())
        # Only cut between distinct scores.
        distinct = np.r_[ps[:-1] > ps[1:], True]
        f = np.where(distinct, f, -1)
        i = int(np.argmax(f))
        cut = ps[i] if i + 1 == len(ps) else (ps[i] + ps[i + 1]) / 2
        thresholds[j] = float(np.clip(cut, MIN_THRESHOLD, MAX_THRESHOLD))
    return thresholds


def calibration_report(proba: np.ndarray, y: np.ndarray, *, bins: int = 10) -> dict:
    """Brier score and expected calibration error (equal-width bins), overall and per label."""
    y = y.astype(float)
    per = []
    for j in range(proba.shape[1]):
        per.append({"brier": float(np.mean((proba[:, j] - y[:, j]) ** 2)),
                    "ece": _ece(proba[:, j], y[:, j], bins)})
    return {
        "brier": float(np.mean((proba - y) ** 2)),
        "ece": _ece(proba.ravel(), y.ravel(), bins),
        "per_label": per,
    }


def _ece(p: np.ndarray, y: np.ndarray, bins: int) -> float:
    idx = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += m.sum() * abs(p[m].mean() - y[m].mean())
    return float(total / max(len(p), 1))
