"""The part features' one pass over a part's pixels, compiled (numba).

Per pixel of a window: BT.601 luma / Cb / Cr, the 4-neighbour Laplacian's absolute value
(noise) and the central-difference gradient, the pixel's elliptical radius band, and
per band the sums of luma, luma^2, Cb, Cr, noise and gradient plus the luma / chroma
histogram counts. In numpy the same work took ten passes and six weighted bincounts over
every window; here it is one loop (features 7.4 -> 2.8 ms an image at 600 px, one process,
most of it this pass: about 20 ns a pixel over some 110,000 pixels).

Arithmetic follows the numpy statement it replaced: float32 per pixel, float64 sums in
pixel order; the window's border pixels take their own value for a neighbour outside it
(numpy's edge padding). `tests/test_part_features.py` checks it against plain masks.
"""

from __future__ import annotations

import math

import numpy as np

from fakeface.compiled import compiled

# BT.601 rows, chroma centred on 0
YCC = np.array(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]],
    np.float32,
)
_YCC64 = YCC.astype(np.float64)  # the kernel's operand, made once


def _window_pass(
    rgb, y0, y1, x0, x1, cx, cy, hx, hy, edges, ycc, luma_bins, chroma_bins, count, sums, hists
):  # pragma: no cover - compiled; its Python twin is not run
    n_bands = count.shape[0]
    h = y1 - y0
    w = x1 - x0
    planes = np.empty((3, h, w), np.float32)
    for i in range(h):
        for j in range(w):
            r = np.float64(rgb[y0 + i, x0 + j, 0])
            g = np.float64(rgb[y0 + i, x0 + j, 1])
            b = np.float64(rgb[y0 + i, x0 + j, 2])
            # (m0 r + m1 g) + m2 b as a chain of fused multiply-adds: each float64 sum is
            # exact (a float32 times a byte fits in 53 bits), so one rounding a step, the
            # values BLAS's sgemm gives on an FMA machine (the numpy statement replaced)
            for c in range(3):
                acc = np.float32(ycc[c, 0] * r)
                acc = np.float32(np.float64(acc) + ycc[c, 1] * g)
                planes[c, i, j] = np.float32(np.float64(acc) + ycc[c, 2] * b)
    y = planes[0]
    cb = planes[1]
    cr = planes[2]
    quarter = np.float32(0.25)
    fcx, fcy = np.float32(cx), np.float32(cy)
    fhx, fhy = np.float32(hx), np.float32(hy)
    y_scale = np.float32(luma_bins / 256.0)
    c_lo = np.float32(-40.0)
    c_scale = np.float32(chroma_bins / 80.0)
    # band-major accumulators, contiguous per band: count and the six sums; the three
    # histograms side by side
    acc = np.zeros((n_bands, 7), np.float64)
    hist = np.zeros((n_bands, 3 * luma_bins), np.int64)
    dxs = np.empty(w, np.float32)
    for j in range(w):
        dxs[j] = (np.float32(x0 + j) - fcx) / fhx
    for i in range(h):
        up = max(i - 1, 0)
        down = min(i + 1, h - 1)
        dy = np.float64((np.float32(y0 + i) - fcy) / fhy)
        for j in range(w):
            left = max(j - 1, 0)
            right = min(j + 1, w - 1)
            v = y[i, j]
            noise = abs(v - quarter * (y[up, j] + y[down, j] + y[i, left] + y[i, right]))
            grad = abs(y[down, j] - y[up, j]) + abs(y[i, right] - y[i, left])
            dx = np.float64(dxs[j])
            # float32 hypot as the C library rounds it (in double, then to float32): the
            # same values as np.hypot on the float32 offsets, without its call
            radius = np.float64(np.float32(math.sqrt(dx * dx + dy * dy)))
            band = 0
            while band + 1 < n_bands and edges[band + 1] <= radius:
                band += 1
            acc[band, 0] += 1.0
            acc[band, 1] += v
            acc[band, 2] += v * v
            acc[band, 3] += cb[i, j]
            acc[band, 4] += cr[i, j]
            acc[band, 5] += noise
            acc[band, 6] += grad
            k = int(v * y_scale)
            hist[band, min(max(k, 0), luma_bins - 1)] += 1
            k = int((cb[i, j] - c_lo) * c_scale)
            hist[band, luma_bins + min(max(k, 0), chroma_bins - 1)] += 1
            k = int((cr[i, j] - c_lo) * c_scale)
            hist[band, 2 * luma_bins + min(max(k, 0), chroma_bins - 1)] += 1
    for band in range(n_bands):
        count[band] = acc[band, 0]
        for q in range(6):
            sums[q, band] = acc[band, q + 1]
        for c in range(3):
            for q in range(luma_bins):
                hists[c, band, q] = hist[band, c * luma_bins + q]


def window_sums(
    rgb: np.ndarray,
    window: tuple[slice, slice],
    centre: np.ndarray,
    half: np.ndarray,
    edges: np.ndarray,
    luma_bins: int,
    chroma_bins: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Over `rgb[window]`, per elementary band of the elliptical radius |(x, y) - centre| /
    half between consecutive `edges` (edges[0] = 0; the last band holds everything beyond):
    pixel counts (B,), sums (6, B) of luma, luma^2, Cb, Cr, noise, gradient, and histogram
    counts (3, B, luma_bins) of luma over [0, 256) and Cb, Cr over [-40, 40) (chroma in the
    first chroma_bins columns, chroma_bins <= luma_bins), values outside a range counted in
    its end bin."""
    if chroma_bins > luma_bins:
        raise ValueError(f"{chroma_bins} chroma bins: at most the {luma_bins} luma bins")
    kernel = compiled(_window_pass)
    n_bands = len(edges)
    count = np.zeros(n_bands, np.float64)
    sums = np.zeros((6, n_bands), np.float64)
    hists = np.zeros((3, n_bands, luma_bins), np.int64)
    rows, cols = window
    kernel(
        np.ascontiguousarray(rgb, dtype=np.uint8),
        rows.start,
        rows.stop,
        cols.start,
        cols.stop,
        float(centre[0]),
        float(centre[1]),
        float(half[0]),
        float(half[1]),
        np.asarray(edges, np.float64),
        _YCC64,
        luma_bins,
        chroma_bins,
        count,
        sums,
        hists,
    )
    return count, sums, hists
