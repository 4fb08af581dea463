"""Thresholds and calibration: F1-optimal cuts, clamping, Platt scaling, ECE."""
from __future__ import annotations

import numpy as np

from model.calibration import (MAX_THRESHOLD, MIN_THRESHOLD, apply_platt, best_thresholds, calibration_report,
                               fit_platt)


def test_threshold_separates_perfectly_separable_scores():
    p = np.array([[0.9], [0.8], [0.3], [0.2]])
    y = np.array([[1], [1], [0], [0]])
    t = best_thresholds(p, y)[0]
    assert 0.3 < t <= 0.8
    assert ((p[:, 0] >= t) == y[:, 0].astype(bool)).all()


def test_threshold_maximises_f1_not_accuracy():
    # One positive among many: F1-optimal cut accepts it even with a few false positives nearby.
    p = np.array([[0.40], [0.39], [0.10], [0.05], [0.04], [0.03]])
    y = np.array([[1], [0], [0], [0], [0], [0]])
    t = best_thresholds(p, y)[0]
    assert 0.39 < t <= 0.40


def test_thresholds_clamped_and_default_for_absent_label():
    p = np.array([[0.001, 0.2], [0.0005, 0.1]])
    y = np.array([[1, 0], [0, 0]])
    t = best_thresholds(p, y)
    assert t[0] == MIN_THRESHOLD and t[1] == 0.5
    assert best_thresholds(np.array([[0.999], [0.9999]]), np.array([[0], [1]]))[0] == MAX_THRESHOLD


def test_platt_scaling_gives_calibrated_probabilities():
    rng = np.random.default_rng(0)
    d = rng.normal(size=(20000, 1)) * 3
    true_p = 1 / (1 + np.exp(-(0.5 * d[:, 0] - 1)))
    y = (rng.random(20000) < true_p).astype(int)[:, None]
    params = fit_platt(d, y)
    assert abs(params[0, 0] - 0.5) < 0.05 and abs(params[0, 1] + 1) < 0.1
    rep = calibration_report(apply_platt(d, params), y)
    assert rep["ece"] < 0.02
    bad = calibration_report(np.clip(apply_platt(d, params) * 1.8, 0, 1), y)
    assert bad["ece"] > rep["ece"] + 0.05
