"""Issue 17: one kernel machine per face part vs one per photo, 5-fold CV, three copies.

    PYTHONPATH=. python research/accuracy/part_heads_probe.py   (after part_features_cache.py)

Folds: StratifiedKFold(5, shuffle, seed 0) on label x level; a stratified 15% of each training
side is the validation split (C per part, the image threshold); the evaluation fold drives
nothing. Copies scored: `orig` (the file), `re` (platform re-encode, 512 px q85 4:2:0),
`unseen` (q60 4:2:2 448 px: a setting training never uses). Pose-balanced AUC as in
benchmarks/accuracy.py (gradient-boosted propensity from the 4 mesh pose numbers of the
original, fitted on the training side, 5 bands).
"""

from __future__ import annotations

import sys

import numpy as np
from sklearn.model_selection import StratifiedKFold

from fakeface.metrics import calibrated_threshold, pose_balanced_auc, pose_propensity, roc_auc
from fakeface.models.part_heads import fit_part_heads, part_labels
from fakeface.outputs import PART_NAMES

z = np.load("/tmp/ff/partfeat.npz")
y, level, flags, pose = z["y"], z["level"], z["flags"], z["pose"]
EVAL = ("orig", "re", "unseen")


def run(name, train_copies, labeller, eye_swap=False, photo=False):
    rows = {c: {"y": [], "s": [], "lv": [], "p": [], "parts": [], "pl": []} for c in EVAL}
    skf = StratifiedKFold(5, shuffle=True, random_state=0)
    for tr, ev in skf.split(np.zeros(len(y)), level):
        inner = StratifiedKFold(7, shuffle=True, random_state=0)
        a, b = next(inner.split(np.zeros(len(tr)), level[tr]))
        fit_idx, val_idx = tr[a], tr[b]
        fl = flags[:, [1, 0, 2, 3]] if eye_swap else flags
        lab = labeller(fl)
        x = np.concatenate([z[c][fit_idx] for c in train_copies])
        ly = np.concatenate([lab[fit_idx]] * len(train_copies))
        if photo:
            x = x.reshape(len(x), 1, -1).repeat(4, axis=1)  # one head sees every part
            vx = z["orig"][val_idx].reshape(len(val_idx), 1, -1).repeat(4, axis=1)
        else:
            vx = z["orig"][val_idx]
        heads = fit_part_heads(x, ly, vx, lab[val_idx])

        def predict(feats, heads=heads):
            if photo:
                feats = feats.reshape(len(feats), 1, -1).repeat(4, axis=1)
                out = heads.predict(feats)
                return out[:, 1], out[:, 1:]
            out = heads.predict(feats)
            return out[:, 0], out[:, 1:]

        thr = calibrated_threshold(y[val_idx], predict(z["orig"][val_idx])[0])
        prop = pose_propensity(pose[tr], y[tr], pose[ev], seed=0)
        for c in EVAL:
            s, parts = predict(z[c][ev])
            r = rows[c]
            r["y"].append(y[ev])
            r["s"].append(s - thr + 0.5)
            r["lv"].extend(level[ev])
            r["p"].append(prop)
            r["parts"].append(parts)
            r["pl"].append(part_labels(fl[ev], y[ev]))
    print(f"\n== {name}")
    for c in EVAL:
        r = rows[c]
        yy, s, p = np.concatenate(r["y"]), np.concatenate(r["s"]), np.concatenate(r["p"])
        lv = np.array(r["lv"])
        pred = s >= 0.5
        rec = {k: pred[lv == k].mean() for k in ("easy", "mid", "hard")}
        kept = (~pred[lv == "real"]).mean()
        parts, pl = np.concatenate(r["parts"]), np.concatenate(r["pl"])
        fake = yy == 1
        pa = " ".join(
            f"{n}:{roc_auc(pl[:, k], parts[:, k]):.3f}/{roc_auc(pl[fake, k], parts[fake, k]):.3f}"
            for k, n in enumerate(PART_NAMES)
        )
        print(
            f"{c:7s} acc {(pred == yy).mean():.3f} AUC {roc_auc(yy, s):.3f} pose-bal "
            f"{pose_balanced_auc(yy, s, p):.3f} easy/mid/hard {rec['easy']:.2f}/{rec['mid']:.2f}/"
            f"{rec['hard']:.2f} reals kept {kept:.2f} | part AUC all/fakes {pa}",
            flush=True,
        )


AUG = ("orig", "aug0", "aug1", "aug2")
which = sys.argv[1:] or ["photo", "parts", "parts_aug", "control", "swap"]
if "photo" in which:
    run(
        "one model per photo (all part features), photo labels, aug",
        AUG,
        lambda f: np.repeat(y[:, None], 4, 1),
        photo=True,
    )
if "parts" in which:
    run(
        "one model per part, part labels, noisy-OR, originals only",
        ("orig",),
        lambda f: part_labels(f, y),
    )
if "parts_aug" in which:
    run(
        "one model per part, part labels, noisy-OR, + 3 re-encodes each",
        AUG,
        lambda f: part_labels(f, y),
    )
if "control" in which:
    run(
        "control: per part, each labelled with its photo's label, aug",
        AUG,
        lambda f: np.repeat(y[:, None], 4, 1),
    )
if "swap" in which:
    run(
        "eye flags swapped (first flag = image's right eye), aug",
        AUG,
        lambda f: part_labels(f, y),
        eye_swap=True,
    )
