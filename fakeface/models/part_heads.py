"""One kernel machine per face part, each fitted on its own part's flag; noisy-OR for the image.

The part recipe (variant `part_heads`): for each part (`fakeface.outputs.PART_NAMES`) an RBF
kernel on that part's features (`fakeface.models.part_features`) to training prototypes,
read by one logistic unit fitted exactly (L-BFGS) on the part's own label, from the fake's
file name (`mid_37_1010.jpg`: left eye, right eye, nose, mouth; reals: all 0). Each head's
output is that part's P(pasted); the image's P(fake) is their noisy-OR, 1 - prod(1 - p):
a photo is fake when any of its parts was pasted.

`fit_part_heads` solves the heads in numpy (the same numbers the Keras layers then hold:
`RadialBasisKernel` and a Dense unit per part); `PartHeads.predict` is the numpy reference
the training job checks the Keras model against.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fakeface.outputs import PART_NAMES

STRENGTHS = (0.3, 1.0, 3.0, 10.0)  # inverse L2 strengths C tried per part, on validation


@dataclass
class PartHead:
    """One part's standardiser, prototypes and logistic unit."""

    mean: np.ndarray
    scale: np.ndarray
    prototypes: np.ndarray  # standardised
    coef: np.ndarray
    bias: float
    strength: float
    val_auc: float

    def similarities(self, x: np.ndarray) -> np.ndarray:
        z = (x - self.mean) / self.scale
        d = (z * z).sum(1)[:, None] - 2 * z @ self.prototypes.T + (self.prototypes**2).sum(1)
        return np.exp(-np.maximum(d, 0.0) / x.shape[1]).astype(np.float32)

    def logit(self, x: np.ndarray) -> np.ndarray:
        return self.similarities(x) @ self.coef + self.bias


@dataclass
class PartHeads:
    """The four heads and the feature row an image without a face is scored with."""

    heads: dict[str, PartHead]
    fill: np.ndarray  # (parts, F): the training rows' mean

    def predict(self, features: np.ndarray) -> np.ndarray:
        """(N, 1 + parts) float32: noisy-OR P(fake), then each part's P(pasted)."""
        features = fill_missing(features, self.fill)
        parts = np.stack(
            [_sigmoid(self.heads[n].logit(features[:, k])) for k, n in enumerate(PART_NAMES)],
            axis=1,
        )
        return np.concatenate([noisy_or(parts)[:, None], parts], axis=1).astype(np.float32)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))


def noisy_or(parts: np.ndarray) -> np.ndarray:
    """1 - prod(1 - p) over the last axis: P(any part pasted) if the parts were independent."""
    return 1.0 - np.prod(1.0 - np.asarray(parts, np.float64), axis=-1)


def face_found(features: np.ndarray) -> np.ndarray:
    """(N,) bool: rows whose every part feature is finite (the mesh found a face)."""
    return np.isfinite(features).reshape(len(features), -1).all(axis=1)


def fill_missing(features: np.ndarray, fill: np.ndarray) -> np.ndarray:
    """`features` (N, parts, F) with non-finite values replaced by `fill` (parts, F)."""
    features = np.asarray(features, np.float32)
    return np.where(np.isfinite(features), features, fill[None]).astype(np.float32)


def part_labels(flags: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(N, parts) 0/1 part labels: a fake's flags, all 0 for a real."""
    flags = np.asarray(flags, np.int64).reshape(len(labels), len(PART_NAMES))
    return flags * (np.asarray(labels).reshape(-1, 1) > 0)


def _auc(y: np.ndarray, s: np.ndarray) -> float:
    from fakeface.metrics import roc_auc

    return float(roc_auc(y, s)) if 0 < y.sum() < len(y) else float("nan")


def fit_part_heads(
    features: np.ndarray,
    labels: np.ndarray,
    val_features: np.ndarray,
    val_labels: np.ndarray,
    n_prototypes: int = 1024,
    strengths: tuple[float, ...] = STRENGTHS,
    seed: int = 0,
) -> PartHeads:
    """Fit one head per part on rows with a face.

    `features` (N, parts, F); `labels` (N, parts) part labels (`part_labels`). Standardiser
    and prototypes come from the training rows; each part's C is chosen among `strengths` by
    that part's AUC on the validation rows (never the evaluation ones).
    """
    from sklearn.linear_model import LogisticRegression

    features = np.asarray(features, np.float32)
    val_features = np.asarray(val_features, np.float32)
    labels, val_labels = np.asarray(labels), np.asarray(val_labels)
    keep, val_keep = face_found(features), face_found(val_features)
    if keep.sum() < 2:
        # No faces to learn from: each head says its part's training rate for every image.
        return _prior_heads(labels, features.shape[-1], n_prototypes)
    fill = features[keep].mean(axis=0)
    rng = np.random.default_rng(seed)
    heads = {}
    for k, name in enumerate(PART_NAMES):
        x = features[keep, k]
        y = labels[keep, k].astype(int)
        mean = x.mean(axis=0)
        scale = x.std(axis=0)
        scale = np.where(scale > 1e-6, scale, 1.0).astype(np.float32)
        n = len(x)
        chosen = (
            np.sort(rng.choice(n, n_prototypes, replace=False))
            if n >= n_prototypes
            else np.resize(np.arange(n), n_prototypes)
        )
        head = PartHead(
            mean, scale, ((x[chosen] - mean) / scale), np.zeros(n_prototypes), 0.0, 0, 0
        )
        sims = head.similarities(x)
        val_x = fill_missing(val_features, fill)[val_keep, k]
        val_y = val_labels[val_keep, k].astype(int)
        val_sims = head.similarities(val_x)
        best = None
        for c in strengths:
            if y.min() == y.max():  # a part never (or always) flagged in training
                fitted = None
                val_auc = float("nan")
            else:
                fitted = LogisticRegression(C=c, max_iter=3000).fit(sims, y)
                val_auc = _auc(val_y, fitted.decision_function(val_sims))
            if best is None or (np.isfinite(val_auc) and val_auc > best[0] + 1e-9):
                best = (val_auc, c, fitted)
        val_auc, c, fitted = best
        if fitted is None:
            rate = float(np.clip(y.mean(), 1e-3, 1 - 1e-3))
            head.bias = float(np.log(rate / (1 - rate)))
        else:
            head.coef = fitted.coef_[0].astype(np.float32)
            head.bias = float(fitted.intercept_[0])
        head.strength, head.val_auc = float(c), float(val_auc)
        heads[name] = head
    return PartHeads(heads, fill.astype(np.float32))


def _prior_heads(labels: np.ndarray, n_features: int, n_prototypes: int) -> PartHeads:
    """Heads that ignore the image: each gives its part's rate among `labels` (N, parts)."""
    heads = {}
    for k, name in enumerate(PART_NAMES):
        rate = float(np.clip(np.mean(labels[:, k]) if len(labels) else 0.5, 1e-3, 1 - 1e-3))
        heads[name] = PartHead(
            np.zeros(n_features, np.float32),
            np.ones(n_features, np.float32),
            np.zeros((n_prototypes, n_features), np.float32),
            np.zeros(n_prototypes, np.float32),
            float(np.log(rate / (1 - rate))),
            0.0,
            float("nan"),
        )
    return PartHeads(heads, np.zeros((len(PART_NAMES), n_features), np.float32))
