"""Classification metrics shared by training, cross-validation and promotion."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

LEVEL_KEYS = ("easy", "mid", "hard", "real")


def level_key(label: int, level: object) -> str:
    """'real' for a real image, else the fake's level; 'unknown' when missing (None or NaN)."""
    if int(label) == 0:
        return "real"
    return level if isinstance(level, str) and level and level != "nan" else "unknown"


def roc_auc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """ROC-AUC by the rank statistic (ties averaged); NaN when one class is missing."""
    y = np.asarray(y_true).astype(int)
    s = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(y.sum()), int(len(y) - y.sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = s[order]
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def best_threshold(y_true: np.ndarray, scores: np.ndarray) -> float:
    """The threshold maximising accuracy on (validation) data; 0.5 when it cannot be chosen."""
    y = np.asarray(y_true).astype(int)
    s = np.asarray(scores, dtype=np.float64)
    if len(y) == 0 or y.min() == y.max():
        return 0.5
    candidates = np.unique(s)
    # Midpoints between neighbouring scores generalise better than the scores themselves.
    mids = np.concatenate([[candidates[0] - 1e-6], (candidates[:-1] + candidates[1:]) / 2])
    accs = [((s >= t).astype(int) == y).mean() for t in mids]
    best = np.flatnonzero(np.isclose(accs, max(accs)))
    return float(np.clip(mids[best[len(best) // 2]], 1e-6, 1 - 1e-6))


def calibrated_threshold(y_true: np.ndarray, scores: np.ndarray, ridge: float = 1e-2) -> float:
    """The score at which a logistic calibration of `scores` on `y_true` crosses 1/2.

    Fits P(fake | s) = sigmoid(a * logit(s) + b) on the validation rows (two parameters,
    Newton's method, a small ridge so separable data stay finite) and returns the score
    where it is 1/2: the accuracy-maximising cut under that model. Every row informs both
    parameters, so the cut moves far less between validation draws than the argmax of the
    empirical accuracy curve (`best_threshold`), which jumps between the plateaus of a weak
    detector (on simulated weak scores: 40% less spread, no loss of accuracy;
    tests/test_metrics.py). Falls back to `best_threshold` when the fit does not rank fakes
    higher (a <= 0).
    """
    y = np.asarray(y_true).astype(np.float64)
    s = np.clip(np.asarray(scores, dtype=np.float64), 1e-6, 1 - 1e-6)
    if len(y) == 0 or y.min() == y.max():
        return 0.5
    z = np.log(s / (1 - s))
    x = np.stack([z, np.ones_like(z)], axis=1)
    w = np.zeros(2)
    for _ in range(50):
        p = 1 / (1 + np.exp(-np.clip(x @ w, -30, 30)))
        grad = x.T @ (p - y) + ridge * w
        hess = (x * (p * (1 - p))[:, None]).T @ x + ridge * np.eye(2)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-9:
            break
    a, b = w
    if not np.isfinite(w).all() or a <= 1e-6:
        return best_threshold(y, s)
    return float(np.clip(1 / (1 + np.exp(b / a)), 1e-6, 1 - 1e-6))


def classification_metrics(
    y_true: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    levels: Sequence[str | None] | None = None,
) -> dict[str, float]:
    """Accuracy, ROC-AUC, precision, recall, F1, per-level accuracy and the majority baseline."""
    y = np.asarray(y_true).astype(int)
    s = np.asarray(scores, dtype=np.float64)
    pred = (s >= threshold).astype(int)
    tp = int(((pred == 1) & (y == 1)).sum())
    fp = int(((pred == 1) & (y == 0)).sum())
    fn = int(((pred == 0) & (y == 1)).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    out = {
        "n": float(len(y)),
        "accuracy": float((pred == y).mean()) if len(y) else float("nan"),
        "auc": roc_auc(y, s),
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "threshold": float(threshold),
        "majority_baseline": float(max(y.mean(), 1 - y.mean())) if len(y) else float("nan"),
    }
    if levels is not None:
        lv = np.array(
            [
                ("real" if yi == 0 else (level or "unknown"))
                for yi, level in zip(y, levels, strict=True)
            ]
        )
        for key in LEVEL_KEYS:
            mask = lv == key
            if mask.any():
                out[f"accuracy_{key}"] = float((pred[mask] == y[mask]).mean())
    return out


def bootstrap_interval(
    y_true: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """95% bootstrap intervals of accuracy and AUC."""
    rng = np.random.default_rng(seed)
    y = np.asarray(y_true).astype(int)
    s = np.asarray(scores, dtype=np.float64)
    accs, aucs = [], []
    for _ in range(n_boot):
        idx = rng.integers(0, len(y), len(y))
        accs.append(((s[idx] >= threshold).astype(int) == y[idx]).mean())
        aucs.append(roc_auc(y[idx], s[idx]))
    return {
        "accuracy": (float(np.nanpercentile(accs, 2.5)), float(np.nanpercentile(accs, 97.5))),
        "auc": (float(np.nanpercentile(aucs, 2.5)), float(np.nanpercentile(aucs, 97.5))),
    }


def pose_propensity(
    train_features: np.ndarray, train_labels: np.ndarray, features: np.ndarray, seed: int = 0
) -> np.ndarray:
    """P(fake | pose numbers) from a gradient-boosted model fitted on the training side only.

    NaN features (no face found) are handled by the booster's own missing-value branches.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier

    model = HistGradientBoostingClassifier(
        max_iter=200, learning_rate=0.05, max_leaf_nodes=15, random_state=seed
    )
    model.fit(np.asarray(train_features, dtype=np.float64), np.asarray(train_labels).astype(int))
    return model.predict_proba(np.asarray(features, dtype=np.float64))[:, 1]


def pose_balanced_auc(
    y_true: np.ndarray, scores: np.ndarray, propensity: np.ndarray, n_bands: int = 5
) -> float:
    """AUC within `n_bands` equal-count bands of the pose propensity, weighted by band size.

    A detector that only reads pose scores near 0.5 here, however high its plain AUC; bands
    with one class only are left out of the average (their weight too). NaN if none has both.
    """
    y = np.asarray(y_true).astype(int)
    s = np.asarray(scores, dtype=np.float64)
    p = np.asarray(propensity, dtype=np.float64)
    order = np.argsort(p, kind="mergesort")  # ties split by position: bands stay equal-count
    total, weighted = 0, 0.0
    for band in np.array_split(order, n_bands):
        auc = roc_auc(y[band], s[band])
        if np.isfinite(auc):
            weighted += auc * len(band)
            total += len(band)
    return weighted / total if total else float("nan")
