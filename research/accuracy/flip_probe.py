"""Probe: horizontal-flip test-time augmentation and flipped training copies for the RBF SVM."""
from __future__ import annotations

import numpy as np
from PIL import Image
from sklearn.svm import SVC

from common import best_threshold, folds, inner_split, load, metrics, summarize

d = load()
import keras  # noqa: E402
from keras import layers  # noqa: E402

from fakeface.models.texture import GradientOrientationHistogram, LocalBinaryPatternHistogram  # noqa: E402

x256 = np.stack([np.array(Image.fromarray(a).resize((256, 256), Image.Resampling.BILINEAR)) for a in d["x"]])
inp = keras.Input((256, 256, 3))
r = layers.Resizing(160, 160)(inp)
f = layers.Concatenate()([layers.Flatten()(GradientOrientationHistogram(cell_size=8)(r)), layers.Flatten()(LocalBinaryPatternHistogram(cell_size=16)(r))])
ext = keras.Model(inp, f)
X = ext.predict(x256.astype("float32"), batch_size=64, verbose=0)
Xf = ext.predict(x256[:, :, ::-1].astype("float32"), batch_size=64, verbose=0)
y, lev = d["y"], d["level"]
res = {k: [] for k in ("plain", "tta", "trainflip", "trainflip+tta")}
for tr, te in folds(d):
    a, v = inner_split(tr, lev)
    mu, sd = X[a].mean(0), X[a].std(0)
    sd = np.where(sd > 1e-6, sd, 1.0)
    Z, Zf = (X - mu) / sd, (Xf - mu) / sd
    g = 1.0 / Z.shape[1]
    for name, fit_X, fit_y in (("plain", Z[a], y[a]), ("trainflip", np.vstack([Z[a], Zf[a]]), np.concatenate([y[a], y[a]]))):
        clf = SVC(C=1.0, gamma=g).fit(fit_X, fit_y)
        for tta in (False, True):
            s = lambda idx: clf.decision_function(Z[idx]) + (clf.decision_function(Zf[idx]) if tta else 0)
            thr = best_threshold(y[v], s(v))
            res[name + ("+tta" if tta and name != "plain" else ("tta" if tta else ""))].append(metrics(y[te], s(te), thr, lev[te])) if not (name == "plain" and tta) else res["tta"].append(metrics(y[te], s(te), thr, lev[te]))
for k, rows in res.items():
    print(f"{k:15s} {summarize(rows)}", flush=True)
