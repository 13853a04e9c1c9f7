"""Hand-made region features from MTCNN landmarks (native resolution, no resampling).

Regions: left eye, right eye, nose, mouth (image-left eye = landmark 0). For each region box and a
ring around it: colour mean/std (YCbCr), noise (median |Laplacian|), gradient energy, chroma noise,
uniform-LBP histogram; region-minus-ring differences; left/right eye differences.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

REGIONS = ("leye", "reye", "nose", "mouth")


def fill_pts(pts):
    """Replace missing landmarks by the median landmarks."""
    pts = pts.copy()
    med = np.nanmedian(pts, axis=0)
    bad = np.isnan(pts[:, 0, 0])
    pts[bad] = med
    return pts


def region_boxes(p):
    """Boxes (cx, cy, w, h) for the four regions from 5 landmarks of one face."""
    le, re, no, ml, mr = p
    e = max(np.linalg.norm(re - le), 10.0)
    mc = (ml + mr) / 2
    mw = max(np.linalg.norm(mr - ml), 0.5 * e)
    return [
        (le[0], le[1], 0.75 * e, 0.5 * e),
        (re[0], re[1], 0.75 * e, 0.5 * e),
        (no[0], no[1] - 0.15 * e, 0.6 * e, 0.75 * e),
        (mc[0], mc[1], 1.3 * mw, 0.6 * e),
    ]


def box_mask(shape, b, scale=1.0):
    """Boolean mask of a box scaled about its centre."""
    cx, cy, w, h = b
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (np.abs(xx - cx) <= w * scale / 2) & (np.abs(yy - cy) <= h * scale / 2)


def ycbcr(img):
    """uint8 RGB -> float YCbCr planes."""
    x = img.astype(np.float32)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    return np.stack([y, 128 - 0.168736 * r - 0.331264 * g + 0.5 * b, 128 + 0.5 * r - 0.418688 * g - 0.081312 * b], -1)


def lbp(y):
    """8-neighbour LBP codes mapped to 10 uniform bins (rotation invariant uniform)."""
    c = y[1:-1, 1:-1]
    offs = [(-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1)]
    bits = [(y[1 + dy : y.shape[0] - 1 + dy, 1 + dx : y.shape[1] - 1 + dx] >= c).astype(np.int32) for dy, dx in offs]
    ones = sum(bits)
    trans = sum(np.abs(bits[i] - bits[(i + 1) % 8]) for i in range(8))
    code = np.where(trans <= 2, ones, 9)
    out = np.zeros(y.shape, np.int32) - 1
    out[1:-1, 1:-1] = code
    return out


def planes(img):
    """Per-pixel planes used by the statistics."""
    ycc = ycbcr(img)
    y = ycc[..., 0]
    lap = ndi.laplace(y)
    gm = np.hypot(ndi.sobel(y, 0), ndi.sobel(y, 1))
    cres = np.stack([ycc[..., k] - ndi.uniform_filter(ycc[..., k], 3) for k in (1, 2)], -1)
    hp = y - ndi.median_filter(y, 3)
    return ycc, lap, gm, cres, hp, lbp(y)


def area_stats(pl, m):
    """Statistics of one area (boolean mask)."""
    ycc, lap, gm, cres, hp, code = pl
    if m.sum() < 9:
        m = np.ones_like(m)
    v = ycc[m]
    f = list(v.mean(0)) + list(v.std(0))
    f += [np.median(np.abs(lap[m])), np.mean(np.abs(lap[m])), gm[m].mean(), np.percentile(gm[m], 90)]
    f += list(np.abs(cres[m]).mean(0)) + [np.abs(hp[m]).mean(), hp[m].std()]
    c = code[m]
    c = c[c >= 0]
    h = np.bincount(c, minlength=10)[:10].astype(np.float32)
    f += list(h / max(h.sum(), 1))
    return np.array(f, np.float32)


NSTAT = 6 + 4 + 4 + 10


def image_features(img, p):
    """Feature vector of one image: per-region (region, ring, diff) + eye asymmetry + global."""
    pl = planes(img)
    feats, per = [], []
    for b in region_boxes(p):
        m_in = box_mask(img.shape[:2], b)
        m_ring = box_mask(img.shape[:2], b, 1.8) & ~m_in
        a, r = area_stats(pl, m_in), area_stats(pl, m_ring)
        per.append(np.concatenate([a, r, a - r]))
    feats = per[0].tolist() + per[1].tolist() + per[2].tolist() + per[3].tolist()
    feats += list(np.abs(per[0][:NSTAT] - per[1][:NSTAT]))
    feats += list(area_stats(pl, np.ones(img.shape[:2], bool)))
    return np.array(feats, np.float32), np.stack(per)


def all_features(x, pts):
    """Image features (N,F) and region features (N,4,3*NSTAT)."""
    pts = fill_pts(pts)
    out = [image_features(x[i], pts[i]) for i in range(len(x))]
    return np.stack([o[0] for o in out]), np.stack([o[1] for o in out])
