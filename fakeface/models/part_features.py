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
copy (research/accuracy/part_heads_probe.py measures both). Cost: about 4 ms an image at
600 px on one core: planes are computed in each part's window only.
"""

from __future__ import annotations

import itertools

import numpy as np

from fakeface.models.parts import PARTS, SKIN
from fakeface.outputs import PART_NAMES

# MediaPipe canonical face-mesh indices, the image's left eye first: parts.py's, not a copy.
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
    h, w = shape[:2]
    x0, y0 = np.clip(np.floor(centre - half * grow), 0, [w - 1, h - 1]).astype(int)
    x1, y1 = np.clip(np.ceil(centre + half * grow) + 1, 1, [w, h]).astype(int)
    return slice(y0, max(y1, y0 + 3)), slice(x0, max(x1, x0 + 3))


def _ycc(rgb: np.ndarray) -> np.ndarray:
    """(h, w, 3) uint8 RGB -> float32 (3, h, w) luma, Cb, Cr (BT.601, chroma centred on 0)."""
    x = rgb.astype(np.float32)
    m = np.array(
        [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]],
        np.float32,
    )
    return np.tensordot(m, x, axes=([1], [2]))


_EDGES = np.array(sorted({*DISC, *SEAM, *SURROUND, *RINGS}), np.float64)  # elementary bands


def _bands(band: tuple[float, float]) -> np.ndarray:
    """Indices of the elementary bands (between consecutive _EDGES) that make up `band`."""
    lo, hi = np.searchsorted(_EDGES, band[0]), np.searchsorted(_EDGES, band[1])
    return np.arange(lo, hi)


_BAND_SETS = {
    "disc": _bands(DISC),
    "seam": _bands(SEAM),
    "surround": _bands(SURROUND),
    **{f"ring{i}": _bands(r) for i, r in enumerate(itertools.pairwise(RINGS))},
}
_N_BANDS = len(_EDGES)  # the last index holds everything beyond the outermost edge


class _Region:
    """One part's window: per elementary band of its elliptical radius map, the sums of
    luma, luma^2, Cb, Cr, noise and gradient, and the luma / chroma histograms of the disc
    and the surround; every statistic below is read off these sums (one pass of bincounts,
    not a boolean mask per band)."""

    def __init__(self, rgb: np.ndarray, points: np.ndarray, grow: float) -> None:
        self.centre = points.mean(axis=0)
        self.half = (points.max(axis=0) - points.min(axis=0)) / 2 + 1.0
        sl = _window(self.centre, self.half, grow, rgb.shape)
        ycc = _ycc(rgb[sl])
        y = ycc[0]
        p = np.pad(y, 1, mode="edge")
        noise = np.abs(y - 0.25 * (p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:]))
        grad = np.abs(p[2:, 1:-1] - p[:-2, 1:-1]) + np.abs(p[1:-1, 2:] - p[1:-1, :-2])
        yy = np.arange(sl[0].start, sl[0].stop, dtype=np.float32)[:, None]
        xx = np.arange(sl[1].start, sl[1].stop, dtype=np.float32)[None, :]
        radius = np.hypot(
            (xx - self.centre[0]) / self.half[0], (yy - self.centre[1]) / self.half[1]
        )
        band = (np.searchsorted(_EDGES, radius.ravel(), side="right") - 1).clip(0, _N_BANDS - 1)
        planes = (y, y * y, ycc[1], ycc[2], noise, grad)
        self.count = np.bincount(band, minlength=_N_BANDS).astype(np.float64)
        self.sums = np.stack(
            [np.bincount(band, weights=v.ravel(), minlength=_N_BANDS) for v in planes]
        )
        # per band, the luma and chroma histograms: one bincount of (band, bin) each
        self.hists = [
            np.bincount(
                band * bins + _bin_index(v.ravel(), lo, hi, bins), minlength=_N_BANDS * bins
            ).reshape(_N_BANDS, bins)
            for v, lo, hi, bins in (
                (y, 0.0, 256.0, LUMA_BINS),
                (ycc[1], -40.0, 40.0, CHROMA_BINS),
                (ycc[2], -40.0, 40.0, CHROMA_BINS),
            )
        ]

    def _totals(self, name: str) -> tuple[float, np.ndarray]:
        """(pixel count, the six sums) over a named band set; the whole window if < 4 px."""
        idx = _BAND_SETS[name]
        n = self.count[idx].sum()
        if n < 4:
            return self.count.sum(), self.sums.sum(axis=1)
        return n, self.sums[:, idx].sum(axis=1)

    def stats(self, name: str) -> np.ndarray:
        """DISC_STATS numbers of the pixels of a named band set."""
        n, (sy, syy, scb, scr, snoise, sgrad) = self._totals(name)
        mean = sy / n
        return np.array(
            [
                mean,
                scb / n,
                scr / n,
                np.log1p(np.sqrt(max(syy / n - mean * mean, 0.0))),
                np.log1p(snoise / n),
                np.log1p(sgrad / n),
            ]
        )

    def mean_of(self, name: str, k: int) -> float:
        """Mean of sum k (2: Cb, 3: Cr, 4: noise, 5: gradient) over a named band set."""
        n, sums = self._totals(name)
        return float(sums[k] / n)

    def profile(self) -> np.ndarray:
        """RING_STATS in each ring of RINGS, relative to the outermost ring (which stays)."""
        rows = []
        for i in range(len(RINGS) - 1):
            n, (sy, _, scb, scr, snoise, sgrad) = self._totals(f"ring{i}")
            rows.append([sy / n, np.log1p(snoise / n), np.log1p(sgrad / n), scb / n, scr / n])
        rows = np.array(rows)
        rows[:-1] -= rows[-1]
        return rows.reshape(-1)

    def histograms(self, name: str) -> list[np.ndarray]:
        """Luma, Cb and Cr histograms of a named band set (the whole window if < 4 px)."""
        idx = _BAND_SETS[name]
        if self.count[idx].sum() < 4:
            idx = np.arange(_N_BANDS)
        return [h[idx].sum(axis=0) for h in self.hists]


def _bin_index(values: np.ndarray, lo: float, hi: float, bins: int) -> np.ndarray:
    """Bin of each value among `bins` equal bins over [lo, hi), outside values clipped to
    the end bins (np.histogram's exact binning costs 5x more; the ends matter little)."""
    return np.clip(((values - lo) * (bins / (hi - lo))).astype(np.int64), 0, bins - 1)


def _chi2(a: np.ndarray, b: np.ndarray) -> float:
    """Chi-square distance of two histograms, each normalised to sum 1 (0: same shape)."""
    a = a / max(a.sum(), 1)
    b = b / max(b.sum(), 1)
    s = a + b
    nz = s > 0
    return float(0.5 * (((a - b) ** 2)[nz] / s[nz]).sum())


def _skin_stats(rgb: np.ndarray, points: np.ndarray, iod: float) -> np.ndarray:
    """Mean luma / Cb / Cr and log noise of a skin patch (its points' box + 5% of the iod)."""
    centre = points.mean(axis=0)
    half = (points.max(axis=0) - points.min(axis=0)) / 2 + 1.0 + 0.05 * iod
    region = _ycc(rgb[_window(centre, half, 1.0, rgb.shape)])
    y = region[0]
    p = np.pad(y, 1, mode="edge")
    noise = np.abs(y - 0.25 * (p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:]))
    return np.array(
        [y.mean(), region[1].mean(), region[2].mean(), np.log1p(noise.mean())], np.float64
    )


def part_features(rgb: np.ndarray, mesh: np.ndarray | None) -> np.ndarray:
    """(len(PART_NAMES), N_PART_FEATURES) float32 for a uint8 RGB image; NaN if no mesh."""
    out = np.full((len(PART_NAMES), N_PART_FEATURES), np.nan, np.float32)
    if mesh is None or not np.isfinite(mesh).all():
        return out
    rgb = np.asarray(rgb)
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
        seam_noise = np.log1p(r.mean_of("seam", 4))
        seam_grad = np.log1p(r.mean_of("seam", 5))
        other = COUNTERPART[name]
        if isinstance(other, str):  # the other eye: the same disc statistics
            other_stats, other_hist = discs[other]
            counterpart = disc_stats - other_stats
            counterpart_hist = [_chi2(a, b) for a, b in zip(disc_hist, other_hist, strict=True)]
        else:  # skin patches: means and noise only (no histograms: those columns stay 0)
            ref = np.mean([skins[s] for s in other], axis=0)
            counterpart = np.array([*(disc_stats[:3] - ref[:3]), 0.0, disc_stats[4] - ref[3], 0.0])
            counterpart_hist = [0.0, 0.0, 0.0]
        out[k] = np.concatenate(
            [
                disc_stats - sur_stats,
                [_chi2(a, b) for a, b in zip(disc_hist, r.histograms("surround"), strict=True)],
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
