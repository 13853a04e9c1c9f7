"""Shared harness: data loading, the stratified 5-fold split (label x level, seed 0), metrics."""

from __future__ import annotations

import glob
import os

import numpy as np
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

D = "/work/shared/data/real-and-fake-face-160/"
CACHE = "/tmp/ff/images.npz"
LEVELS = ("real", "easy", "mid", "hard")


def load():
    """Return dict(x uint8 N,160,160,3, y, level, flags N,4, paths, pts N,5,2 or None)."""
    if os.path.exists(CACHE):
        z = np.load(CACHE)
        d = {k: z[k] for k in z.files}
    else:
        from PIL import Image

        paths = sorted(glob.glob(D + "training_real/*.jpg")) + sorted(glob.glob(D + "training_fake/*.jpg"))
        x = np.stack([np.array(Image.open(p).convert("RGB").resize((160, 160))) for p in paths])
        y, lev, fl = [], [], []
        for p in paths:
            b = os.path.basename(p)[:-4]
            if b.startswith("real"):
                y.append(0), lev.append("real"), fl.append([0, 0, 0, 0])
            else:
                lv, _, f = b.split("_")
                y.append(1), lev.append(lv), fl.append([int(c) for c in f])
        d = dict(x=x, y=np.array(y), level=np.array(lev), flags=np.array(fl), paths=np.array(paths))
        np.savez(CACHE, **d)
    lm = "/tmp/ff/landmarks.npz"
    if os.path.exists(lm):
        z = np.load(lm)
        assert list(z["paths"]) == list(d["paths"])
        d["pts"] = z["pts"]
        d["box"] = z["box"]
    return d


def folds(d, k=5, seed=0):
    """Stratified k folds on label x level (level 'real' for reals), shuffled with seed."""
    skf = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return list(skf.split(np.zeros(len(d["y"])), d["level"]))


def inner_split(idx, level, frac=0.2, seed=0):
    """Carve a stratified validation part from training indices idx."""
    skf = StratifiedKFold(n_splits=int(round(1 / frac)), shuffle=True, random_state=seed)
    tr, va = next(skf.split(np.zeros(len(idx)), level[idx]))
    return idx[tr], idx[va]


def best_threshold(y, s):
    """Threshold maximising accuracy on (validation) scores."""
    cand = np.unique(s)
    cand = np.concatenate([[cand[0] - 1e-9], (cand[:-1] + cand[1:]) / 2, [cand[-1] + 1e-9]]) if len(cand) > 1 else cand
    acc = [((s > t) == y).mean() for t in cand]
    return float(cand[int(np.argmax(acc))])


def metrics(y, s, thr, level):
    """acc, auc, recall per fake level, specificity on reals."""
    p = s > thr
    m = dict(acc=float((p == y).mean()), auc=float(roc_auc_score(y, s)))
    for lv in LEVELS:
        sel = level == lv
        m["spec_real" if lv == "real" else "rec_" + lv] = float((p[sel] == (lv != "real")).mean())
    return m


def summarize(rows):
    """Mean and std over fold metric dicts, as a printable string."""
    keys = ["acc", "auc", "rec_easy", "rec_mid", "rec_hard", "spec_real"]
    return "  ".join(f"{k}={np.mean([r[k] for r in rows]):.3f}±{np.std([r[k] for r in rows]):.3f}" for k in keys)
