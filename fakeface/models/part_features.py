"""Each face part judged against its own photo: one feature row per part, placed by the mesh.

A fake of the CIPLAB data set is a real face with an eye, the nose or the mouth pasted in
from another photo. The pasted part comes from another camera, light and skin, so it
differs from the face around it. For each part (`fakeface.outputs.PART_NAMES`) this
measures, at the resolution it is given (the part model resizes to 600 px), only against
the same photo (never against an
absolute level, which would read the camera, the pose or the file's compression):

- **part vs surround**: in an elliptical disc over the part (radius < 1 of its half extent)
  and the annulus around it (1.3-2.2): luma / Cb / Cr mean differences, the log ratios of
  luma spread, high-pass noise (mean absolute deviation of a 4-neighbour Laplacian) and
  gradient energy, and chi-square distances of the luma (16 bins) and chroma (8 bins each)
  histograms;
- **the seam**: high-pass noise and gradient energy in the ring 0.8-1.25, against the disc
  and the surround, where a blending boundary lies;
- **part vs the face's own skin** (cheeks, forehead, chin): mean luma / Cb / Cr differences
  and the log noise ratio;
- **part vs its counterpart**: each eye against the other eye (the same disc statistics and
  histogram distances), the nose against the cheeks, the mouth against the chin;
- **its size** against the inter-ocular distance;
- **its own profile**: the disc's statistics, and luma, noise, gradient and chroma in five
  rings from its centre outwards, each relative to the outermost (`fakeface.models.parts`'
  seam rings, which held up on the re-encode).

Everything is a difference or a ratio inside one photo, so the row holds on a re-encoded
copy (research/accuracy/part_heads_probe.py measures both). Cost: one compiled pass over
each part's window and each skin patch (`fakeface.models.window_sums`, about 110,000 pixels
of a 600 px face), then a few array operations per part.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from fakeface.mesh_points import PARTS, SKIN
from fakeface.models.window_sums import window_sums
from fakeface.outputs import PART_NAMES

# MediaPipe canonical face-mesh indices, the image's left eye first (fakeface.mesh_points).
PART_POINTS = PARTS
SKIN_POINTS = SKIN
COUNTERPART = {
    "left_eye": "right_eye",
    "right_eye": "left_eye",
    "nose": ("left_cheek", "right_cheek"),
    "mouth": ("chin",),
}
DISC, SEAM, SURROUND = (0.0, 1.0), (0.8, 1.25), (1.3, 2.2)
RINGS = (0.0, 0.7, 1.0, 1.3, 1.7, 2.2)  # the profile from the part's centre outwards
RING_STATS = ("luma", "noise", "grad", "cb", "cr")
OUTER = SURROUND[1]
LUMA_BINS, CHROMA_BINS = 16, 8
DISC_STATS = 6  # luma, Cb, Cr means; log luma spread, log noise, log gradient
FEATURE_NAMES = (
    *(f"surround_{k}" for k in ("dy", "dcb", "dcr", "spread", "noise", "grad")),
    *(f"surround_hist_{k}" for k in ("y", "cb", "cr")),
    "seam_noise_vs_disc",
    "seam_noise_vs_surround",
    "seam_grad_vs_disc",
    "seam_grad_vs_surround",
    *(f"skin_{k}" for k in ("dy", "dcb", "dcr", "noise")),
    *(f"counterpart_{k}" for k in ("dy", "dcb", "dcr", "spread", "noise", "grad")),
    *(f"counterpart_hist_{k}" for k in ("y", "cb", "cr")),
    "width_over_iod",
    "height_over_iod",
    *(f"disc_{k}" for k in ("y", "cb", "cr", "spread", "noise", "grad")),
    *(f"ring{i}_{k}" for i in range(len(RINGS) - 1) for k in RING_STATS),
)
N_PART_FEATURES = len(FEATURE_NAMES)


def _window(centre: np.ndarray, half: np.ndarray, grow: float, shape) -> tuple[slice, slice]:
    """The box centre +- half * grow, clipped to the image, at least 3 px a side (scalar
    arithmetic: the same float64 values as numpy's, without its per-call overhead)."""
    h, w = shape[:2]
    cx, cy = float(centre[0]), float(centre[1])
    hx, hy = float(half[0]) * grow, float(half[1]) * grow
    x0 = int(min(max(math.floor(cx - hx), 0), w - 1))
    y0 = int(min(max(math.floor(cy - hy), 0), h - 1))
    x1 = int(min(max(math.ceil(cx + hx) + 1, 1), w))
    y1 = int(min(max(math.ceil(cy + hy) + 1, 1), h))
    return slice(y0, max(y1, y0 + 3)), slice(x0, max(x1, x0 + 3))


_EDGES = np.array(sorted({*DISC, *SEAM, *SURROUND, *RINGS}), np.float64)  # elementary bands


def _bands(band: tuple[float, float]) -> np.ndarray:
    """Indices of the elementary bands (between consecutive _EDGES) that make up `band`."""
    lo, hi = np.searchsorted(_EDGES, band[0]), np.searchsorted(_EDGES, band[1])
    return np.arange(lo, hi)


_SET_NAMES = ("disc", "seam", "surround", *(f"ring{i}" for i in range(len(RINGS) - 1)))
_SET_INDEX = {name: k for k, name in enumerate(_SET_NAMES)}
# membership of each elementary band in each named band set: (bands, sets)
_MEMBERS = np.zeros((len(_EDGES), len(_SET_NAMES)), np.float64)
for _k, _band in enumerate((DISC, SEAM, SURROUND, *itertools.pairwise(RINGS))):
    _MEMBERS[_bands(_band), _k] = 1.0
_N_BANDS = len(_EDGES)  # the last index holds everything beyond the outermost edge


class _Region:
    """One part's window: per elementary band of its elliptical radius map, the sums of
    luma, luma^2, Cb, Cr, noise and gradient, and the luma / chroma histograms (one compiled
    pass over the window, `fakeface.models.window_sums`); then per named band set (disc,
    seam, surround, rings) the DISC_STATS numbers, all sets at once. A set of fewer than 4
    pixels reads the whole window instead."""

    def __init__(self, rgb: np.ndarray, points: np.ndarray, grow: float) -> None:
        self.centre = points.mean(axis=0)
        self.half = (points.max(axis=0) - points.min(axis=0)) / 2 + 1.0
        count, sums, self._hists = window_sums(
            rgb,
            _window(self.centre, self.half, grow, rgb.shape),
            self.centre,
            self.half,
            _EDGES,
            LUMA_BINS,
            CHROMA_BINS,
        )
        n = count @ _MEMBERS
        totals = sums @ _MEMBERS
        self._small = n < 4
        n = np.where(self._small, count.sum(), n)
        totals = np.where(self._small, sums.sum(axis=1)[:, None], totals)
        sy, syy, scb, scr, snoise, sgrad = totals
        mean = sy / n
        # (DISC_STATS, sets): luma, Cb, Cr means; log luma spread, log noise, log gradient
        self.set_stats = np.stack(
            [
                mean,
                scb / n,
                scr / n,
                np.log1p(np.sqrt(np.maximum(syy / n - mean * mean, 0.0))),
                np.log1p(snoise / n),
                np.log1p(sgrad / n),
            ]
        )

    def stats(self, name: str) -> np.ndarray:
        """DISC_STATS numbers of the pixels of a named band set."""
        return self.set_stats[:, _SET_INDEX[name]]

    def profile(self) -> np.ndarray:
        """RING_STATS in each ring of RINGS, relative to the outermost ring (which stays)."""
        rings = self.set_stats[[0, 4, 5, 1, 2], 3:].T  # (rings, luma noise grad cb cr)
        rings = rings.copy()
        rings[:-1] -= rings[-1]
        return rings.reshape(-1)

    def histograms(self, name: str) -> np.ndarray:
        """(3, LUMA_BINS) luma, Cb and Cr histograms of a named band set (chroma in the first
        CHROMA_BINS columns, zeros after); the whole window if it holds < 4 px."""
        k = _SET_INDEX[name]
        members = np.ones(_N_BANDS, bool) if self._small[k] else _MEMBERS[:, k] > 0
        return self._hists[:, members].sum(axis=1)


def _chi2(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Chi-square distance of each row pair of two histogram stacks, each row normalised to
    sum 1 (0: same shape); empty bins in both add nothing."""
    a = a / np.maximum(a.sum(axis=-1, keepdims=True), 1)
    b = b / np.maximum(b.sum(axis=-1, keepdims=True), 1)
    s = a + b
    return 0.5 * np.divide((a - b) ** 2, s, out=np.zeros_like(s), where=s > 0).sum(axis=-1)


def _skin_stats(rgb: np.ndarray, points: np.ndarray, iod: float) -> np.ndarray:
    """Mean luma / Cb / Cr and log noise of a skin patch (its points' box + 5% of the iod)."""
    centre = points.mean(axis=0)
    half = (points.max(axis=0) - points.min(axis=0)) / 2 + 1.0 + 0.05 * iod
    # one band: a radius scale so large that every pixel of the box lies at radius 0
    count, sums, _ = window_sums(
        rgb, _window(centre, half, 1.0, rgb.shape), centre, np.full(2, 1e30), _EDGES[:1], 1, 1
    )
    n = count[0]
    return np.array([sums[0, 0] / n, sums[2, 0] / n, sums[3, 0] / n, np.log1p(sums[4, 0] / n)])


def part_features(rgb: np.ndarray, mesh: np.ndarray | None) -> np.ndarray:
    """(len(PART_NAMES), N_PART_FEATURES) float32 for a uint8 RGB image; NaN if no mesh."""
    out = np.full((len(PART_NAMES), N_PART_FEATURES), np.nan, np.float32)
    if mesh is None or not np.isfinite(mesh).all():
        return out
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    mesh = np.asarray(mesh, np.float64)
    iod = float(np.hypot(*(mesh[[33, 133]].mean(0) - mesh[[362, 263]].mean(0))))
    iod = max(iod, 1.0)
    regions = {n: _Region(rgb, mesh[list(PART_POINTS[n])], OUTER) for n in PART_NAMES}
    skins = {n: _skin_stats(rgb, mesh[list(idx)], iod) for n, idx in SKIN_POINTS.items()}
    skin = np.mean(list(skins.values()), axis=0)
    discs = {name: (r.stats("disc"), r.histograms("disc")) for name, r in regions.items()}
    for k, name in enumerate(PART_NAMES):
        r = regions[name]
        disc_stats, disc_hist = discs[name]
        sur_stats = r.stats("surround")
        seam = r.stats("seam")
        seam_noise, seam_grad = seam[4], seam[5]
        other = COUNTERPART[name]
        if isinstance(other, str):  # the other eye: the same disc statistics
            other_stats, other_hist = discs[other]
            counterpart = disc_stats - other_stats
            counterpart_hist = _chi2(disc_hist, other_hist)
        else:  # skin patches: means and noise only (no histograms: those columns stay 0)
            ref = np.mean([skins[s] for s in other], axis=0)
            counterpart = np.array([*(disc_stats[:3] - ref[:3]), 0.0, disc_stats[4] - ref[3], 0.0])
            counterpart_hist = [0.0, 0.0, 0.0]
        out[k] = np.concatenate(
            [
                disc_stats - sur_stats,
                _chi2(disc_hist, r.histograms("surround")),
                [
                    seam_noise - disc_stats[4],
                    seam_noise - sur_stats[4],
                    seam_grad - disc_stats[5],
                    seam_grad - sur_stats[5],
                ],
                [*(disc_stats[:3] - skin[:3]), disc_stats[4] - skin[3]],
                counterpart,
                counterpart_hist,
                [2 * r.half[0] / iod, 2 * r.half[1] / iod],
                disc_stats,
                r.profile(),
            ]
        )
    return out
