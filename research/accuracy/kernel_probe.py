"""Probe: RBF kernel head trained by gradient descent (what a Keras kernel layer would do) vs SVC."""
from __future__ import annotations

import os
import sys

import numpy as np
from PIL import Image
from sklearn.svm import SVC

from common import best_threshold, folds, inner_split, load, metrics, summarize

d = load()
import keras  # noqa: E402
from keras import layers  # noqa: E402

from fakeface.models.texture import GradientOrientationHistogram, LocalBinaryPatternHistogram  # noqa: E402

x256 = d["x"] if __import__("os").environ.get("NATIVE") else np.stack([np.array(Image.fromarray(a).resize((256, 256), Image.Resampling.BILINEAR)) for a in d["x"]])
inp = keras.Input(x256.shape[1:])
r = layers.Resizing(160, 160)(inp)
f = layers.Concatenate()([layers.Flatten()(GradientOrientationHistogram(cell_size=8)(r)), layers.Flatten()(LocalBinaryPatternHistogram(cell_size=16)(r))])
X = keras.Model(inp, f).predict(x256.astype("float32"), batch_size=64, verbose=0)
y, lev = d["y"], d["level"]
epochs = int(os.environ.get("EPOCHS", 30))
l2 = float(os.environ.get("L2", 1e-3))
lr = float(os.environ.get("LR", 0.01))
rows_svm, rows_gd = [], []
for tr, te in folds(d):
    a, v = inner_split(tr, lev)
    mu, sd = X[a].mean(0), X[a].std(0) + 1e-6
    Z = (X - mu) / sd
    gamma = 1.0 / Z.shape[1]
    svm = SVC(C=1.0, gamma=gamma).fit(Z[a], y[a])
    thr = best_threshold(y[v], svm.decision_function(Z[v]))
    rows_svm.append(metrics(y[te], svm.decision_function(Z[te]), thr, lev[te]))
    P = Z[a]
    def kern(M):
        d2 = (M**2).sum(1)[:, None] + (P**2).sum(1)[None] - 2 * M @ P.T
        return np.exp(-gamma * np.maximum(d2, 0)).astype("float32")
    Ka, Kv, Kt = kern(Z[a]), kern(Z[v]), kern(Z[te])
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((P.shape[0],)), layers.Dense(1, activation="sigmoid", kernel_regularizer=keras.regularizers.L2(l2))])
    m.compile(keras.optimizers.Adam(lr), "binary_crossentropy", metrics=[keras.metrics.AUC(name="auc")])
    es = keras.callbacks.EarlyStopping("val_auc", mode="max", patience=100, restore_best_weights=True)
    m.fit(Ka, y[a], batch_size=32, epochs=epochs, validation_data=(Kv, y[v]), callbacks=[es], verbose=0)
    sv = m.predict(Kv, verbose=0).ravel()
    thr = best_threshold(y[v], sv)
    rows_gd.append(metrics(y[te], m.predict(Kt, verbose=0).ravel(), thr, lev[te]))
print("svm  ", summarize(rows_svm))
print(f"gd l2={l2} lr={lr} ep={epochs}", summarize(rows_gd), flush=True)
