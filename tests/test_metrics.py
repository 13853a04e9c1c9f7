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


def test_pose_balanced_auc_gives_a_pure_pose_reader_one_half() -> None:
    from fakeface.metrics import pose_balanced_auc

    rng = np.random.default_rng(0)
    propensity = np.repeat([0.1, 0.3, 0.5, 0.7, 0.9], 200)
    y = (rng.random(1000) < propensity).astype(int)
    pose_reader = propensity.copy()  # constant within each band: ties everywhere
    assert roc_auc(y, pose_reader) > 0.75
    assert pose_balanced_auc(y, pose_reader, propensity) == 0.5
    # A detector of the label itself keeps its score within the bands.
    detector = y + rng.normal(0, 0.5, 1000)
    plain, balanced = roc_auc(y, detector), pose_balanced_auc(y, detector, propensity)
    assert abs(plain - balanced) < 0.05 and balanced > 0.85


def test_pose_balanced_auc_weights_bands_and_skips_one_class_bands() -> None:
    from fakeface.metrics import pose_balanced_auc

    # Band 1 (low propensity): perfect; band 2: inverted; band 3: reals only, left out.
    propensity = np.arange(12, dtype=float)
    y = np.array([0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    s = np.array([0.1, 0.2, 0.8, 0.9, 0.1, 0.2, 0.8, 0.9, 0.5, 0.5, 0.5, 0.5])
    assert pose_balanced_auc(y, s, propensity, n_bands=3) == 0.5
    assert math.isnan(pose_balanced_auc(np.zeros(6), np.arange(6.0), np.arange(6.0), n_bands=2))


def test_pose_propensity_learns_pose_from_the_training_side_only() -> None:
    from fakeface.metrics import pose_propensity

    rng = np.random.default_rng(1)
    x = rng.normal(size=(600, 4))
    x[rng.random((600, 4)) < 0.05] = np.nan  # faces not found
    y = (np.nan_to_num(x[:, 1]) + 0.3 * rng.normal(size=600) > 0).astype(int)
    p = pose_propensity(x[:400], y[:400], x[400:])
    assert p.shape == (200,) and np.all((p >= 0) & (p <= 1))
    assert roc_auc(y[400:], p) > 0.8


def test_calibrated_threshold_moves_less_between_validation_draws() -> None:
    from fakeface.metrics import calibrated_threshold

    rng = np.random.default_rng(3)

    def weak_scores(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, 2, n)
        return y, 1 / (1 + np.exp(-(0.8 * (2 * y - 1) + rng.normal(0, 1.5, n))))

    y_test, s_test = weak_scores(20000)
    plain, calibrated, acc_plain, acc_calibrated = [], [], [], []
    for _ in range(40):  # 40 validation draws of 200 images from one weak detector
        y, s = weak_scores(200)
        plain.append(best_threshold(y, s))
        calibrated.append(calibrated_threshold(y, s))
        acc_plain.append(((s_test >= plain[-1]) == y_test).mean())
        acc_calibrated.append(((s_test >= calibrated[-1]) == y_test).mean())
    assert np.std(calibrated) < 0.75 * np.std(plain)
    assert np.mean(acc_calibrated) >= np.mean(acc_plain) - 0.002
    # The population's best cut is 0.5 by symmetry: the calibration stays centred on it.
    assert abs(np.median(calibrated) - 0.5) < 0.05


def test_calibrated_threshold_edge_cases() -> None:
    from fakeface.metrics import calibrated_threshold

    assert calibrated_threshold(np.ones(5), np.linspace(0, 1, 5)) == 0.5
    separable = calibrated_threshold(
        np.array([0, 0, 0, 1, 1, 1]), np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    )
    assert 0.3 < separable < 0.7
    # Scores that rank reals higher: no calibration to trust, the empirical cut is used.
    y, s = np.array([1, 1, 0, 0]), np.array([0.1, 0.2, 0.8, 0.9])
    assert calibrated_threshold(y, s) == best_threshold(y, s)
