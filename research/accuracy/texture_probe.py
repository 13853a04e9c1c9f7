"""Probe: fakeface.models.texture layers (in-graph HOG/LBP/cell stats) + sklearn heads, 5-fold.

    python research/accuracy/texture_probe.py SIZE FEATURESETS...   e.g. 160 hog lbp hog+lbp+stat

Images go through the production path's resampling (PIL bilinear to 256, as ingest stores
them, then the model's bilinear Resizing to SIZE), so what the probe measures is what a
Keras head on the same layers would see.
"""

from __future__ import annotations

import sys
import time

import numpy as np
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.neural_network import MLPClassifier

from common import best_threshold, folds, inner_split, load, metrics, summarize

size = int(sys.argv[1])
sets = sys.argv[2:]
d = load()
import keras  # noqa: E402
from keras import layers  # noqa: E402

from fakeface.models.texture import (  # noqa: E402
    CellStatistics,
    GradientOrientationHistogram,
    LocalBinaryPatternHistogram,
)

x256 = np.stack([np.array(Image.fromarray(a).resize((256, 256), Image.Resampling.BILINEAR)) for a in d["x"]])
inp = keras.Input((256, 256, 3))
r = layers.Resizing(size, size)(inp)
outs = {
    "hog": GradientOrientationHistogram(cell_size=8)(r),
    "lbp": LocalBinaryPatternHistogram(radius=1, cell_size=16)(r),
    "lbp2": LocalBinaryPatternHistogram(radius=2, cell_size=16)(r),
    "stat": CellStatistics(cell_size=8)(r),
}
m = keras.Model(inp, {k: layers.Flatten()(v) for k, v in outs.items()})
t = time.time()
F = m.predict(x256.astype("float32"), batch_size=64, verbose=0)
print(f"features {time.time() - t:.1f}s", {k: v.shape[1] for k, v in F.items()})
def score(c, X):
    return c.decision_function(X) if hasattr(c, 'decision_function') else c.predict_proba(X)[:, 1]


y, lev = d["y"], d["level"]
for fs in sets:
    X = np.concatenate([F[k] for k in fs.split("+")], axis=1)
    for name, mk in [(n, f) for n, f in [
        ("svm", lambda: make_pipeline(StandardScaler(), SVC(C=1.0))),
        ("logit", lambda: make_pipeline(StandardScaler(), LogisticRegression(C=0.002, max_iter=3000))),
        ("mlp", lambda: make_pipeline(StandardScaler(), MLPClassifier((256,), alpha=float(__import__("os").environ.get("ALPHA", "1.0")), max_iter=200, early_stopping=False, random_state=0))),
    ] if n in __import__("os").environ.get("HEADS", "svm,logit,mlp")]:
        rows = []
        for tr, te in folds(d):
            a, v = inner_split(tr, lev)
            clf = mk().fit(X[a], y[a])
            sv = score(clf, X[v])
            thr = best_threshold(y[v], sv)
            clf = mk().fit(X[tr], y[tr])
            rows.append(metrics(y[te], score(clf, X[te]), thr, lev[te]))
        print(f"{size} {fs:20s} {name:6s} {summarize(rows)}", flush=True)
