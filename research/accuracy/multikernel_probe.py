"""Probe: one RBF kernel per descriptor group, averaged (multiple-kernel SVM), 5-fold."""
from __future__ import annotations

import sys

import numpy as np
from PIL import Image
from sklearn.svm import SVC

from common import best_threshold, folds, inner_split, load, metrics, summarize

d = load()
import keras  # noqa: E402
from keras import layers  # noqa: E402

from fakeface.models.texture import CellStatistics, GradientOrientationHistogram, LocalBinaryPatternHistogram  # noqa: E402

x256 = np.stack([np.array(Image.fromarray(a).resize((256, 256), Image.Resampling.BILINEAR)) for a in d["x"]])
inp = keras.Input((256, 256, 3))
r160 = layers.Resizing(160, 160)(inp)
r128 = layers.Resizing(128, 128)(inp)
ycc = layers.Lambda(lambda t: t)(r160)
outs = {
    "hog8": GradientOrientationHistogram(cell_size=8)(r160),
    "hog16": GradientOrientationHistogram(cell_size=16)(r160),
    "hog4_128": GradientOrientationHistogram(cell_size=4)(r128),
    "lbp1": LocalBinaryPatternHistogram(radius=1, cell_size=16)(r160),
    "lbp2": LocalBinaryPatternHistogram(radius=2, cell_size=16)(r160),
    "lbp1c8": LocalBinaryPatternHistogram(radius=1, cell_size=8)(r160),
    "stat8": CellStatistics(cell_size=8)(r160),
    "stat16": CellStatistics(cell_size=16)(r160),
}
F = keras.Model(inp, {k: layers.Flatten()(v) for k, v in outs.items()}).predict(x256.astype("float32"), batch_size=64, verbose=0)
y, lev = d["y"], d["level"]


def rbf(A, B):
    d2 = (A**2).sum(1)[:, None] + (B**2).sum(1)[None] - 2 * A @ B.T
    return np.exp(-np.maximum(d2, 0) / A.shape[1])


for combo in sys.argv[1:]:
    groups = combo.split("+")
    rows = []
    for tr, te in folds(d):
        a, v = inner_split(tr, lev)
        Ks = {}
        for g in groups:
            X = F[g]
            mu, sd = X[a].mean(0), X[a].std(0)
            sd = np.where(sd > 1e-6, sd, 1.0)
            Z = (X - mu) / sd
            Ks[g] = rbf(Z, Z[a])
        K = sum(Ks.values()) / len(groups)
        clf = SVC(C=1.0, kernel="precomputed").fit(K[a], y[a])
        thr = best_threshold(y[v], clf.decision_function(K[v]))
        rows.append(metrics(y[te], clf.decision_function(K[te]), thr, lev[te]))
    print(f"{combo:40s} {summarize(rows)}", flush=True)
