"""Late fusion of CNN runs (saved val/test scores) with the classic aligned-feature SVM.

Usage: python ensemble.py TAG[,TAG2...] [--svm]  (folds taken from the saved score files)
Each member's scores are standardised with its validation-split mean/std; the fused score is
their mean; the threshold is picked on the validation split (never the evaluation fold).
"""

import glob
import itertools
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import common  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.svm import SVC  # noqa: E402

d = common.load()
y, lev = d["y"], d["level"]
tags = sys.argv[1].split(",") if len(sys.argv) > 1 and sys.argv[1] != "-" else []
use_svm = "--svm" in sys.argv
F = np.concatenate([np.load(f"/tmp/ff/map_{s}.npy") for s in ("stat", "lbp", "hog")], 1)
folds = common.folds(d)
ks = sorted({int(p.split("_f")[-1][:-4]) for p in glob.glob(f"/tmp/ff/val_{tags[0]}_f*.npy")}) if tags else range(5)
rows = {}
for k in ks:
    tr_all, te = folds[k]
    tr, va = common.inner_split(tr_all, lev)
    members = []
    for t in tags:
        vi, vs = np.load(f"/tmp/ff/val_{t}_f{k}.npy")
        ti, ts = np.load(f"/tmp/ff/scores_{t}_f{k}.npy")
        assert np.array_equal(vi.astype(int), va) and np.array_equal(ti.astype(int), te)
        members.append((t, vs, ts))
    if use_svm:
        m = make_pipeline(StandardScaler(), SVC(C=1.0, gamma="scale")).fit(F[tr], y[tr])
        members.append(("svm", m.decision_function(F[va]), m.decision_function(F[te])))
    combos = [list(c) for n in range(1, len(members) + 1) for c in itertools.combinations(members, n)]
    for c in combos:
        name = "+".join(mm[0] for mm in c)
        sv = np.mean([(mm[1] - mm[1].mean()) / mm[1].std() for mm in c], 0)
        st = np.mean([(mm[2] - mm[1].mean()) / mm[1].std() for mm in c], 0)
        thr = common.best_threshold(y[va], sv)
        rows.setdefault(name, []).append(common.metrics(y[te], st, thr, lev[te]))
for name, r in rows.items():
    print(f"{name} folds={list(ks)}: {common.summarize(r)}")
