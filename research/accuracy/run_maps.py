"""Classic features on eye-aligned faces: block statistic maps and spatial multi-scale LBP/HOG histograms.

Usage: python run_maps.py [feature-set ...]   sets: stat, lbp, hog, all
Threshold from inner 3-fold OOF on the training side; model trained on the whole training side.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import common  # noqa: E402
import feats  # noqa: E402
import numpy as np  # noqa: E402
from scipy import ndimage as ndi  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import StratifiedKFold, cross_val_predict  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.svm import SVC  # noqa: E402

d = common.load()
z = np.load("/tmp/ff/aligned128.npz")
X = z["x"]
y, lev = d["y"], d["level"]


def block_mean(a, b):
    h, w = a.shape[:2]
    return a.reshape(h // b, b, w // b, b, *a.shape[2:]).mean((1, 3))


def stat_maps(img):
    ycc = feats.ycbcr(img)
    yy = ycc[..., 0]
    hp = yy - ndi.median_filter(yy, 3)
    gm = np.hypot(ndi.sobel(yy, 0), ndi.sobel(yy, 1))
    med = np.median(ycc[32:112, 24:104].reshape(-1, 3), 0)
    c = ycc - med
    m = [block_mean(c, 8)[..., k] for k in range(3)]
    m += [np.sqrt(block_mean(hp**2, 8)), block_mean(gm, 8), np.sqrt(block_mean((ycc[..., 1] - ndi.uniform_filter(ycc[..., 1], 3)) ** 2, 8))]
    return np.stack(m, -1)[2:15, 1:15].ravel()  # central face rows/cols


def lbp_hist(img):
    g = feats.ycbcr(img)[..., 0]
    out = []
    for sigma in (0, 1.0):
        gg = ndi.gaussian_filter(g, sigma) if sigma else g
        code = feats.lbp(gg)
        for r0 in range(16, 128, 16):
            for c0 in range(16, 112, 16):
                c = code[r0 : r0 + 16, c0 : c0 + 16].ravel()
                c = c[c >= 0]
                h = np.bincount(c, minlength=10)[:10].astype(np.float32)
                out.append(np.sqrt(h / max(h.sum(), 1)))
    return np.concatenate(out)


def hog(img, cell=8, nb=9):
    g = feats.ycbcr(img)[..., 0]
    gx, gy = ndi.sobel(g, 1), ndi.sobel(g, 0)
    mag, ang = np.hypot(gx, gy), np.mod(np.arctan2(gy, gx), np.pi)
    b = np.minimum((ang / np.pi * nb).astype(int), nb - 1)
    H = np.stack([block_mean(mag * (b == k), cell) for k in range(nb)], -1)
    H = H / (np.linalg.norm(H, axis=-1, keepdims=True) + 1e-3)
    return H[2:15, 1:15].ravel()


XR = d["x"]  # native 160 px images (no resampling) for the spectra


def radial_spectrum(i, nb=40):
    """Log azimuthally averaged power spectrum of Y, Cb, Cr (native image), energy-normalised."""
    ycc = feats.ycbcr(XR[i])
    h, w = ycc.shape[:2]
    yy, xx = np.mgrid[:h, :w]
    r = np.hypot(yy - h / 2, xx - w / 2)
    b = np.minimum((r / (h / 2) * nb).astype(int), nb - 1)
    win = np.outer(np.hanning(h), np.hanning(w))
    out = []
    for k in range(3):
        a = ycc[..., k] - ycc[..., k].mean()
        ps = np.abs(np.fft.fftshift(np.fft.fft2(a * win))) ** 2
        prof = np.bincount(b.ravel(), ps.ravel(), nb) / np.bincount(b.ravel(), minlength=nb)
        lp = np.log(prof + 1e-6)
        out.append(lp - lp[:4].mean())
    return np.concatenate(out)


def get(name, fn):
    p = f"/tmp/ff/map_{name}.npy"
    if not os.path.exists(p):
        np.save(p, np.stack([fn(im) for im in X]).astype(np.float32))
    return np.load(p)


def get_i(name, fn):
    p = f"/tmp/ff/map_{name}.npy"
    if not os.path.exists(p):
        np.save(p, np.stack([fn(i) for i in range(len(XR))]).astype(np.float32))
    return np.load(p)


sets = {
    "fft": lambda: get_i("fft", radial_spectrum),
    "srm": lambda: np.load("/tmp/ff/map_srm.npy"),  # from srm.py
    "stat": lambda: get("stat", stat_maps), "lbp": lambda: get("lbp", lbp_hist), "hog": lambda: get("hog", hog)}
models = {
    "logreg": lambda C: make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=3000)),
    "svm": lambda C: make_pipeline(StandardScaler(), SVC(C=C, gamma="scale")),
}
req = sys.argv[1:] or ["stat", "lbp", "hog", "stat+lbp+hog"]
for fs in req:
    t = time.time()
    F = np.concatenate([sets[s]() for s in fs.split("+")], 1)
    tf_ = time.time() - t
    for mname, C in (("logreg", 0.002), ("svm", 1.0), ("svm", 3.0)):
        t = time.time()
        rows = []
        for tr, te in common.folds(d):
            inner = StratifiedKFold(3, shuffle=True, random_state=0)
            oof = cross_val_predict(models[mname](C), F[tr], y[tr], cv=inner.split(F[tr], lev[tr]), method="decision_function")
            thr = common.best_threshold(y[tr], oof)
            m = models[mname](C).fit(F[tr], y[tr])
            rows.append(common.metrics(y[te], m.decision_function(F[te]), thr, lev[te]))
        print(f"{fs} {F.shape[1]}d {mname} C={C}: {common.summarize(rows)} (feat {tf_:.0f}s, cv {time.time() - t:.0f}s)", flush=True)
