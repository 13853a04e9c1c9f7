"""Issue 12 probe: face-mesh geometry + native-resolution region statistics, 5-fold, two copies.

    PYTHONPATH=/work/main python research/accuracy/mesh_probe.py [geom|region|both]

Meshes (fakeface.landmarks.FaceMesher) of the 600 px originals and of their platform
re-encodes (benchmarks/accuracy.py writes them under var/bench/accuracy/<name>/reencoded)
are cached in /tmp/ff/mesh600.npz. Classifier: standardise -> RBF SVM (probability off,
decision function as score), StratifiedKFold(5, shuffle, seed 0) on label x level. Trained on
the original copy's training folds; scored on both copies of the evaluation fold. Pose-balanced
AUC: per fold a HistGradientBoosting model of the label from the 4 pose numbers, fitted on
the training folds, 5 equal bands.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data" / "real-and-fake-face-600"
RE = ROOT / "var" / "bench" / "accuracy" / "real-and-fake-face-600" / "reencoded"
CACHE = Path("/tmp/ff/mesh600.npz")

L_EYE = [33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246]
R_EYE = [362, 382, 381, 380, 374, 373, 390, 249, 263, 466, 388, 387, 386, 385, 384, 398]
NOSE = [1, 2, 4, 5, 195, 197, 98, 327, 129, 358]
MOUTH = [0, 13, 14, 17, 61, 291, 78, 308, 37, 267, 84, 314]
L_CHEEK = [50, 101, 118, 205]
R_CHEEK = [280, 330, 347, 425]
FOREHEAD = [9, 151, 108, 337]
CHIN = [152, 175, 199, 200]
REGIONS = {"leye": L_EYE, "reye": R_EYE, "nose": NOSE, "mouth": MOUTH, "lcheek": L_CHEEK,
           "rcheek": R_CHEEK, "forehead": FOREHEAD, "chin": CHIN}


def files() -> list[Path]:
    return sorted(DATA.rglob("*.jpg"))


def meshes() -> dict[str, np.ndarray]:
    if CACHE.exists():
        return dict(np.load(CACHE))
    from fakeface.landmarks import FaceMesher

    mesher = FaceMesher()
    out = {}
    for copy, root in (("orig", DATA), ("re", RE)):
        arr = np.full((len(files()), 468, 2), np.nan)
        for i, f in enumerate(files()):
            with Image.open(root / f.relative_to(DATA)) as im:
                m = mesher.mesh(im)
            if m is not None:
                arr[i] = m
        out[copy] = arr
    CACHE.parent.mkdir(exist_ok=True)
    np.savez(CACHE, **out)
    return out


def geometry(mesh: np.ndarray) -> np.ndarray:
    """Similarity-normalised mesh: eyes centre at origin, IOD 1, eye line horizontal."""
    if not np.isfinite(mesh).all():
        return np.full(936, np.nan)
    a, b = mesh[[33, 133]].mean(0), mesh[[362, 263]].mean(0)
    c, d = (a + b) / 2, b - a
    s = np.hypot(*d)
    ang = np.arctan2(d[1], d[0])
    rot = np.array([[np.cos(-ang), -np.sin(-ang)], [np.sin(-ang), np.cos(-ang)]])
    return (((mesh - c) / s) @ rot.T).reshape(-1)


def region_stats(img: np.ndarray, mesh: np.ndarray) -> np.ndarray:
    """Per region: YCbCr mean/std, high-pass energy, at native resolution; + differences."""
    n_feat = 5 * len(REGIONS)
    if not np.isfinite(mesh).all():
        return np.full(n_feat + 15, np.nan)
    ycc = img.astype(np.float32)
    y = 0.299 * ycc[..., 0] + 0.587 * ycc[..., 1] + 0.114 * ycc[..., 2]
    cb = 128 - 0.168736 * ycc[..., 0] - 0.331264 * ycc[..., 1] + 0.5 * ycc[..., 2]
    cr = 128 + 0.5 * ycc[..., 0] - 0.418688 * ycc[..., 1] - 0.081312 * ycc[..., 2]
    hp = np.abs(y - 0.25 * (np.roll(y, 1, 0) + np.roll(y, -1, 0) + np.roll(y, 1, 1) + np.roll(y, -1, 1)))
    iod = np.hypot(*(mesh[[33, 133]].mean(0) - mesh[[362, 263]].mean(0)))
    h, w = y.shape
    feats = {}
    for name, idx in REGIONS.items():
        pts = mesh[idx]
        x0, y0 = np.clip(pts.min(0) - 0.05 * iod, 0, [w - 1, h - 1]).astype(int)
        x1, y1 = np.clip(pts.max(0) + 0.05 * iod, 1, [w, h]).astype(int)
        if x1 <= x0 + 1 or y1 <= y0 + 1:
            x1, y1 = x0 + 2, y0 + 2
        sl = (slice(y0, y1), slice(x0, x1))
        feats[name] = np.array([y[sl].mean(), cb[sl].mean(), cr[sl].mean(), y[sl].std(),
                                np.log1p(hp[sl].mean())])
    skin = (feats["lcheek"] + feats["rcheek"] + feats["forehead"] + feats["chin"]) / 4
    diffs = [feats["leye"] - feats["reye"], feats["nose"] - skin, feats["mouth"] - feats["chin"]]
    return np.concatenate([*feats.values(), *diffs])


PARTS = {"leye": L_EYE, "reye": R_EYE, "nose": NOSE, "mouth": MOUTH}
RINGS = (0.0, 0.7, 1.0, 1.3, 1.7, 2.2)


def ring_stats(img: np.ndarray, mesh: np.ndarray) -> np.ndarray:
    """Per part: high-pass energy, noise (MAD) and colour in concentric rings around it.

    A paste leaves a blending boundary near the part's outline: inside and outside differ in
    noise, sharpness and colour, and the boundary ring carries the seam.
    """
    n_out = len(PARTS) * (len(RINGS) - 1) * 5
    if not np.isfinite(mesh).all():
        return np.full(n_out, np.nan)
    f = img.astype(np.float32)
    y = 0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2]
    cb = -0.168736 * f[..., 0] - 0.331264 * f[..., 1] + 0.5 * f[..., 2]
    cr = 0.5 * f[..., 0] - 0.418688 * f[..., 1] - 0.081312 * f[..., 2]
    hp = y - 0.25 * (np.roll(y, 1, 0) + np.roll(y, -1, 0) + np.roll(y, 1, 1) + np.roll(y, -1, 1))
    gy, gx = np.gradient(y)
    grad = np.hypot(gx, gy)
    h, w = y.shape
    out = []
    for idx in PARTS.values():
        pts = mesh[idx]
        c = pts.mean(0)
        half = (pts.max(0) - pts.min(0)) / 2 + 1.0
        r_max = RINGS[-1]
        x0, y0 = np.clip((c - half * r_max).astype(int), 0, [w - 1, h - 1])
        x1, y1 = np.clip((c + half * r_max).astype(int) + 1, 1, [w, h])
        yy, xx = np.mgrid[y0:y1, x0:x1]
        # elliptical radius in units of the part's half extent
        rr = np.hypot((xx - c[0]) / half[0], (yy - c[1]) / half[1])
        sl = (slice(y0, y1), slice(x0, x1))
        stats = []
        for lo, hi in zip(RINGS[:-1], RINGS[1:]):
            m = (rr >= lo) & (rr < hi)
            if m.sum() < 4:
                stats.append([np.nan] * 5)
                continue
            e = hp[sl][m]
            stats.append([np.log1p(np.abs(e).mean()), np.log1p(np.median(np.abs(e - np.median(e)))),
                          np.log1p(grad[sl][m].mean()), cb[sl][m].mean(), cr[sl][m].mean()])
        stats = np.array(stats)
        # relative to the outermost ring (the face's own skin around the part)
        rel = stats - stats[-1]
        rel[-1] = stats[-1]
        out.append(rel.reshape(-1))
    return np.concatenate(out)


def features(copy: str, mesh_all: np.ndarray, kind: str) -> np.ndarray:
    cache = Path(f"/tmp/ff/feat600-{copy}-{kind}.npy")
    if cache.exists():
        return np.load(cache)
    root = DATA if copy == "orig" else RE
    rows = []
    for i, f in enumerate(files()):
        parts = []
        if kind in ("geom", "both"):
            parts.append(geometry(mesh_all[i]))
        if kind in ("region", "both"):
            with Image.open(root / f.relative_to(DATA)) as im:
                img = np.asarray(im.convert("RGB"))
            parts.append(region_stats(img, mesh_all[i]))
        if kind == "ring":
            with Image.open(root / f.relative_to(DATA)) as im:
                img = np.asarray(im.convert("RGB"))
            parts.append(ring_stats(img, mesh_all[i]))
        rows.append(np.concatenate(parts))
    X = np.array(rows)
    np.save(cache, X)
    return X


def main() -> None:
    from sklearn.decomposition import PCA
    from sklearn.impute import SimpleImputer
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    from fakeface.landmarks import pose_features
    from fakeface.metrics import pose_balanced_auc, pose_propensity, roc_auc

    kind = sys.argv[1] if len(sys.argv) > 1 else "both"
    fs = files()
    y = np.array([0 if "real" in f.parent.name else 1 for f in fs])
    level = np.array(["real" if t == 0 else f.name.split("_")[0] for f, t in zip(fs, y)])
    M = meshes()
    print("no face: orig", int((~np.isfinite(M["orig"][:, 0, 0])).sum()), "re",
          int((~np.isfinite(M["re"][:, 0, 0])).sum()))
    pose = np.array([pose_features(m if np.isfinite(m).all() else None, 600, 600) for m in M["orig"]])
    X = {c: features(c, M[c], kind) for c in ("orig", "re")}
    skf = StratifiedKFold(5, shuffle=True, random_state=0)
    scores = {c: np.zeros(len(y)) for c in X}
    prop = np.zeros(len(y))
    for tr, te in skf.split(X["orig"], level):
        steps = [SimpleImputer(), StandardScaler()]
        if X["orig"].shape[1] > 200:
            steps.append(PCA(100, random_state=0))
        model = make_pipeline(*steps, SVC(C=1.0, gamma="scale"))
        model.fit(X["orig"][tr], y[tr])
        for c in X:
            scores[c][te] = model.decision_function(X[c][te])
        prop[te] = pose_propensity(pose[tr], y[tr], pose[te])
    print(f"{kind}: pose-only AUC {roc_auc(y, prop):.3f}")
    for c in X:
        s = scores[c]
        rec = {lv: float(np.mean(s[level == lv] > 0)) for lv in ("easy", "mid", "hard")}
        print(f"  {c}: AUC {roc_auc(y, s):.3f} pose-balanced {pose_balanced_auc(y, s, prop):.3f} "
              f"easy-vs-real AUC {roc_auc(y[(level == 'easy') | (y == 0)], s[(level == 'easy') | (y == 0)]):.3f} "
              f"recall@0 {rec}")


if __name__ == "__main__":
    main()
