"""Region-level classic model: one row per (image, region), label = region flag; image score = max/mean."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import common  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.ensemble import HistGradientBoostingClassifier  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

d = common.load()
z = np.load("/tmp/ff/feats.npz")
R = z["R"]
y, lev, fl = d["y"], d["level"], d["flags"].copy()
swap = "swap" in sys.argv
if swap:
    fl = fl[:, [1, 0, 2, 3]]
N = len(y)
X = np.concatenate([R.reshape(N * 4, -1), np.tile(np.eye(4), (N, 1))], 1)
Y = fl.reshape(-1)
img = np.repeat(np.arange(N), 4)
t = time.time()
rows, rauc = {"max": [], "mean": []}, []
for tr, te in common.folds(d):
    tr_in, va = common.inner_split(tr, lev)
    rtr = np.isin(img, tr_in)
    m = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, max_leaf_nodes=15, l2_regularization=1.0, random_state=0)
    m.fit(X[rtr], Y[rtr])
    for agg in rows:
        f = np.max if agg == "max" else np.mean
        sv = f(m.predict_proba(X[np.isin(img, va)])[:, 1].reshape(-1, 4), 1)
        st = f(m.predict_proba(X[np.isin(img, te)])[:, 1].reshape(-1, 4), 1)
        thr = common.best_threshold(y[va], sv)
        rows[agg].append(common.metrics(y[te], st, thr, lev[te]))
    rte = np.isin(img, te)
    rauc.append(roc_auc_score(Y[rte], m.predict_proba(X[rte])[:, 1]))
for agg in rows:
    print(f"region-hgb swap={swap} agg={agg}: {common.summarize(rows[agg])}")
print(f"region-level AUC {np.mean(rauc):.3f}  ({(time.time() - t) / 60:.1f} min)")
