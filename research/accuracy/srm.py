"""SRM/SPAM-lite co-occurrence features of quantised, truncated high-pass residuals (native res).

Residuals of Y: 1st-order and 2nd-order differences, horizontal and vertical; quantised by q,
truncated to [-T, T]; 3-pixel co-occurrences along and across the residual direction
(horizontal and vertical versions summed); histograms normalised. Whole image and face box.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import common  # noqa: E402
import feats  # noqa: E402
import numpy as np  # noqa: E402

T = 2
B = 2 * T + 1


def cooc3(r, axis):
    """Normalised histogram of 3 consecutive values of integer residual r (in [-T, T]) along axis."""
    r = r + T
    if axis == 1:
        a, b, c = r[:, :-2], r[:, 1:-1], r[:, 2:]
    else:
        a, b, c = r[:-2], r[1:-1], r[2:]
    idx = (a * B + b) * B + c
    h = np.bincount(idx.ravel(), minlength=B**3).astype(np.float32)
    return h


def residuals(y):
    """(name, horizontal residual, vertical residual) pairs."""
    h1 = y[:, 1:] - y[:, :-1]
    v1 = y[1:] - y[:-1]
    h2 = y[:, :-2] - 2 * y[:, 1:-1] + y[:, 2:]
    v2 = y[:-2] - 2 * y[1:-1] + y[2:]
    return [("o1", h1, v1, (1.0, 2.0)), ("o2", h2, v2, (2.0, 4.0))]


def srm_features(y):
    out = []
    for _, h, v, qs in residuals(y):
        for q in qs:
            hq = np.clip(np.round(h / q), -T, T).astype(np.int64)
            vq = np.clip(np.round(v / q), -T, T).astype(np.int64)
            par = cooc3(hq, 1) + cooc3(vq, 0)
            per = cooc3(hq, 0) + cooc3(vq, 1)
            out += [par / par.sum(), per / per.sum()]
    return np.concatenate(out)


def face_box(p, shape):
    le, re, _, ml, mr = p
    e = np.linalg.norm(re - le)
    x0, x1 = min(le[0], ml[0]) - 0.45 * e, max(re[0], mr[0]) + 0.45 * e
    y0, y1 = min(le[1], re[1]) - 0.5 * e, max(ml[1], mr[1]) + 0.35 * e
    x0, y0 = int(max(0, x0)), int(max(0, y0))
    x1, y1 = int(min(shape[1], x1)), int(min(shape[0], y1))
    return x0, y0, x1, y1


def all_srm():
    d = common.load()
    pts = feats.fill_pts(d["pts"])
    F = []
    for img, p in zip(d["x"], pts, strict=True):
        ycc = feats.ycbcr(img)
        y = ycc[..., 0]
        x0, y0, x1, y1 = face_box(p, y.shape)
        f = [srm_features(y), srm_features(y[y0:y1, x0:x1])]
        F.append(np.concatenate(f))
    return np.stack(F).astype(np.float32)


if __name__ == "__main__":
    F = all_srm()
    np.save("/tmp/ff/map_srm.npy", F)
    print(F.shape)
