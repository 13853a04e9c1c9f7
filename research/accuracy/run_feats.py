"""Classic baselines on region features: 5-fold CV, threshold from inner OOF on the training side."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import common  # noqa: E402
import feats  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.ensemble import HistGradientBoostingClassifier  # noqa: E402
from sklearn.model_selection import cross_val_predict, StratifiedKFold  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.svm import SVC  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

d = common.load()
cache = "/tmp/ff/feats.npz"
t = time.time()
if os.path.exists(cache):
    z = np.load(cache)
    F, R = z["F"], z["R"]
else:
    F, R = feats.all_features(d["x"], d["pts"])
    np.savez(cache, F=F, R=R)
print("features", F.shape, R.shape, f"{time.time() - t:.0f}s", flush=True)
y, lev = d["y"], d["level"]

models = {
    "hgb": lambda: HistGradientBoostingClassifier(max_iter=300, learning_rate=0.05, max_leaf_nodes=15, l2_regularization=1.0, random_state=0),
    "svm": lambda: make_pipeline(StandardScaler(), SVC(C=1.0, gamma="scale", probability=False, random_state=0)),
    "logreg": lambda: make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=2000)),
}
which = sys.argv[1:] or list(models)


def score(m, X):
    return m.decision_function(X) if hasattr(m, "decision_function") and not hasattr(m, "predict_proba") or isinstance(m, type(make_pipeline(StandardScaler()))) and hasattr(m[-1], "decision_function") else m.predict_proba(X)[:, 1]


for name in which:
    t = time.time()
    rows = []
    for k, (tr, te) in enumerate(common.folds(d)):
        inner = StratifiedKFold(3, shuffle=True, random_state=0)
        oof = cross_val_predict(models[name](), F[tr], y[tr], cv=inner.split(F[tr], lev[tr]), method="decision_function" if name != "hgb" else "predict_proba")
        oof = oof if oof.ndim == 1 else oof[:, 1]
        thr = common.best_threshold(y[tr], oof)
        m = models[name]().fit(F[tr], y[tr])
        s = m.predict_proba(F[te])[:, 1] if name == "hgb" else m.decision_function(F[te])
        rows.append(common.metrics(y[te], s, thr, lev[te]))
    print(f"{name}: {common.summarize(rows)}  ({(time.time() - t) / 60:.1f} min total)", flush=True)
