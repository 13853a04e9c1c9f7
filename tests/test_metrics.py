"""Metrics against hand-computed values."""

import math

import numpy as np

from fakeface.metrics import best_threshold, bootstrap_interval, classification_metrics, roc_auc


def test_roc_auc_known_values() -> None:
    assert roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == 0.75
    assert roc_auc(np.array([0, 1]), np.array([0.5, 0.5])) == 0.5
    assert math.isnan(roc_auc(np.array([1, 1]), np.array([0.2, 0.3])))


def test_classification_metrics_per_level() -> None:
    y = np.array([0, 0, 1, 1, 1])
    p = np.array([0.1, 0.7, 0.9, 0.2, 0.8])
    m = classification_metrics(y, p, 0.5, [None, None, "easy", "hard", "hard"])
    assert m["accuracy"] == 0.6
    assert m["accuracy_real"] == 0.5 and m["accuracy_easy"] == 1.0 and m["accuracy_hard"] == 0.5
    assert math.isclose(m["precision"], 2 / 3) and math.isclose(m["recall"], 2 / 3)
    assert m["majority_baseline"] == 0.6


def test_best_threshold_separates_separable_scores() -> None:
    y = np.array([0, 0, 0, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.6, 0.9])
    t = best_threshold(y, p)
    assert 0.3 < t < 0.6


def test_bootstrap_interval_contains_point_estimate() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    p = np.clip(y * 0.3 + rng.random(200) * 0.7, 0, 1)
    ci = bootstrap_interval(y, p, 0.5, n_boot=200)
    acc = ((p >= 0.5) == y).mean()
    assert ci["accuracy"][0] <= acc <= ci["accuracy"][1]
