"""Probe: HOG on the chroma channels (Cb, Cr) beside luma HOG + LBP, RBF SVM, 5-fold."""
from __future__ import annotations

import sys

import numpy as np
from PIL import Image
from sklearn.svm import SVC

from common import best_threshold, folds, inner_split, load, metrics, summarize

d = load()
import keras  # noqa: E402
from keras import layers  # noqa: E402

from fakeface.models.texture import GradientOrientationHistogram, LocalBinaryPatternHistogram  # noqa: E402

x = d["x"].astype("float32")
ycc = np.stack([np.array(Image.fromarray(a).convert("YCbCr"), np.float32) for a in d["x"]])
def grey3(c):  # one channel as a grey RGB image
    return np.repeat(c[..., None], 3, -1)
def feats(img, layer):
    inp = keras.Input(img.shape[1:])
    return keras.Model(inp, layers.Flatten()(layer(inp))).predict(img, batch_size=64, verbose=0)
F = {
    "hog": feats(x, GradientOrientationHistogram(cell_size=8)),
    "lbp": feats(x, LocalBinaryPatternHistogram(cell_size=16)),
    # chroma contrast is small: stretch x4 around 128 so the block normalisation eps matters less
    "hogcb": feats(grey3(np.clip((ycc[..., 1] - 128) * 4 + 128, 0, 255)), GradientOrientationHistogram(cell_size=8)),
    "hogcr": feats(grey3(np.clip((ycc[..., 2] - 128) * 4 + 128, 0, 255)), GradientOrientationHistogram(cell_size=8)),
    "lbpcr": feats(grey3(ycc[..., 2]), LocalBinaryPatternHistogram(cell_size=16)),
    "lbpcb": feats(grey3(ycc[..., 1]), LocalBinaryPatternHistogram(cell_size=16)),
}
y, lev = d["y"], d["level"]
for combo in sys.argv[1:]:
    X = np.concatenate([F[g] for g in combo.split("+")], axis=1)
    rows = []
    for tr, te in folds(d):
        a, v = inner_split(tr, lev)
        mu, sd = X[a].mean(0), X[a].std(0)
        sd = np.where(sd > 1e-6, sd, 1.0)
        Z = (X - mu) / sd
        clf = SVC(C=1.0, gamma=1.0 / Z.shape[1]).fit(Z[a], y[a])
        thr = best_threshold(y[v], clf.decision_function(Z[v]))
        rows.append(metrics(y[te], clf.decision_function(Z[te]), thr, lev[te]))
    print(f"{combo:30s} {summarize(rows)}", flush=True)
