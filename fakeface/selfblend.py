"""Self-blended fakes: paste face regions from a jittered source through soft masks (numpy)."""

from __future__ import annotations

import numpy as np

REGIONS = ("left_eye", "right_eye", "nose", "mouth")

# Typical-face prior, as fractions of the image side, for loosely aligned square face crops
# (MTCNN on the 160 px real faces: eye centre y~0.49, eye distance ~0.26, mouth y~0.75).
PRIOR_LANDMARKS = np.array(
    [[0.405, 0.49], [0.665, 0.49], [0.535, 0.62], [0.45, 0.75], [0.62, 0.75]], dtype=np.float32
)


def prior_landmarks(height: int, width: int) -> np.ndarray:
    """Five landmarks (left eye, right eye, nose, mouth left, mouth right) from the prior."""
    return PRIOR_LANDMARKS * np.array([width, height], dtype=np.float32)


def region_ellipses(landmarks: np.ndarray) -> np.ndarray:
    """(4, 4) ellipses (cx, cy, rx, ry) for left eye, right eye, nose, mouth from 5 landmarks."""
    lm = np.asarray(landmarks, dtype=np.float32)
    le, re, no, ml, mr = lm
    e = max(float(np.linalg.norm(re - le)), 4.0)
    mc = (ml + mr) / 2
    mw = max(float(np.linalg.norm(mr - ml)), 0.5 * e)
    return np.array(
        [
            [le[0], le[1], 0.42 * e, 0.28 * e],
            [re[0], re[1], 0.42 * e, 0.28 * e],
            [no[0], no[1] - 0.18 * e, 0.30 * e, 0.45 * e],
            [mc[0], mc[1], 0.72 * mw, 0.32 * e],
        ],
        dtype=np.float32,
    )


def _box_blur(a: np.ndarray, r: int) -> np.ndarray:
    """Separable box blur of a 2-D or 3-D (H, W, C) float array with radius r (edge padding)."""
    if r <= 0:
        return a
    k = 2 * r + 1
    for axis in (0, 1):
        pad = [(0, 0)] * a.ndim
        pad[axis] = (r + 1, r)
        c = np.cumsum(np.pad(a, pad, mode="edge"), axis=axis, dtype=np.float64)
        hi = np.take(c, np.arange(k, k + a.shape[axis]), axis=axis)
        lo = np.take(c, np.arange(0, a.shape[axis]), axis=axis)
        a = ((hi - lo) / k).astype(np.float32)
    return a


def soft_blur(a: np.ndarray, sigma: float) -> np.ndarray:
    """Approximate Gaussian blur (three box passes) of a float array."""
    r = round(sigma * 0.9)
    for _ in range(3):
        a = _box_blur(a, r)
    return a


def region_mask(
    shape: tuple[int, int],
    ellipse,
    rng: np.random.Generator,
    jitter: float = 0.25,
    max_soft: float = 0.35,
) -> np.ndarray:
    """Soft random mask in [0, 1] around one region: jittered wobbly ellipse, blurred edge."""
    h, w = shape
    cx, cy, rx, ry = (float(v) for v in ellipse)
    cx += rng.uniform(-jitter, jitter) * rx * 0.5
    cy += rng.uniform(-jitter, jitter) * ry * 0.5
    rx *= 1 + rng.uniform(-jitter, jitter)
    ry *= 1 + rng.uniform(-jitter, jitter)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ang = np.arctan2((yy - cy) / max(ry, 1.0), (xx - cx) / max(rx, 1.0))
    # wobble: low-order random Fourier radius modulation
    rad = np.ones_like(ang)
    for k in (2, 3, 4):
        rad += rng.uniform(-0.08, 0.08) * np.cos(k * ang + rng.uniform(0, 2 * np.pi))
    d = np.sqrt(((xx - cx) / max(rx, 1.0)) ** 2 + ((yy - cy) / max(ry, 1.0)) ** 2) / rad
    hard = (d <= 1.0).astype(np.float32)
    sigma = rng.uniform(0.05, max_soft) * min(rx, ry) + 0.5
    m = soft_blur(hard, sigma)
    return np.clip(m, 0.0, 1.0).astype(np.float32)


def jitter_source(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Colour/brightness/contrast/blur/sharpen/scale-jittered float copy of an image (H, W, 3)."""
    x = image.astype(np.float32)
    h, w = x.shape[:2]
    # colour and tone
    gain = rng.uniform(0.85, 1.15, size=3).astype(np.float32)
    x = x * gain + rng.uniform(-18, 18, size=3).astype(np.float32)
    mean = x.mean(axis=(0, 1), keepdims=True)
    x = (x - mean) * rng.uniform(0.8, 1.2) + mean
    # blur or sharpen
    u = rng.uniform()
    if u < 0.35:
        x = soft_blur(x, rng.uniform(0.6, 1.8))
    elif u < 0.6:
        x = x + rng.uniform(0.3, 1.2) * (x - soft_blur(x, 1.0))
    # small scale + shift (nearest-neighbour resample keeps it pure numpy and fast)
    if rng.uniform() < 0.6:
        s = rng.uniform(0.9, 1.1)
        dx, dy = rng.uniform(-2.5, 2.5, size=2)
        yy = np.clip(((np.arange(h) - h / 2) / s + h / 2 + dy).round().astype(int), 0, h - 1)
        xx = np.clip(((np.arange(w) - w / 2) / s + w / 2 + dx).round().astype(int), 0, w - 1)
        x = x[yy][:, xx]
    if rng.uniform() < 0.3:
        x = x + rng.normal(0, rng.uniform(1, 5), size=x.shape).astype(np.float32)
    return x


def match_colour(
    src: np.ndarray, dst: np.ndarray, weight: np.ndarray, strength: float
) -> np.ndarray:
    """Move src's weighted per-channel mean/std towards dst's (Reinhard transfer), by strength."""
    wsum = float(weight.sum())
    if wsum < 1e-6 or strength <= 0:
        return src
    w = weight[..., None] / wsum
    mu_s, mu_d = (src * w).sum((0, 1)), (dst * w).sum((0, 1))
    sd_s = np.sqrt(((src - mu_s) ** 2 * w).sum((0, 1))) + 1e-3
    sd_d = np.sqrt(((dst - mu_d) ** 2 * w).sum((0, 1))) + 1e-3
    matched = (src - mu_s) * (sd_d / sd_s) + mu_d
    return (1 - strength) * src + strength * matched


def make_self_blended(
    image: np.ndarray,
    rng: np.random.Generator,
    landmarks: np.ndarray | None = None,
    donor: np.ndarray | None = None,
    donor_landmarks: np.ndarray | None = None,
    p_region: float = 0.5,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Blend 1-4 regions from a jittered source into `image` -> (fake uint8, mask HxW, flags[4])."""
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError("image must be (H, W, 3)")
    h, w = img.shape[:2]
    lm = prior_landmarks(h, w) if landmarks is None else np.asarray(landmarks, np.float32)
    flags = (rng.uniform(size=4) < p_region).astype(np.int8)
    if flags.sum() == 0:
        flags[rng.integers(4)] = 1
    src_img = img
    if donor is not None:
        d = np.asarray(donor)
        if d.shape != img.shape:
            raise ValueError("donor must have the image's shape")
        if donor_landmarks is not None:
            # shift donor so its eye/mouth centroid lands on the target's
            off = (np.asarray(donor_landmarks, np.float32).mean(0) - lm.mean(0)).round().astype(int)
            yy = np.clip(np.arange(h) + off[1], 0, h - 1)
            xx = np.clip(np.arange(w) + off[0], 0, w - 1)
            d = d[yy][:, xx]
        src_img = d
    src = jitter_source(src_img, rng)
    ell = region_ellipses(lm)
    mask = np.zeros((h, w), np.float32)
    for k in np.flatnonzero(flags):
        mask = np.maximum(mask, region_mask((h, w), ell[k], rng))
    # colour transfer inside the mask (how a retoucher matches a pasted part), random strength
    strength = rng.uniform(0.5, 1.0) if donor is not None else rng.uniform(0.0, 1.0)
    src = match_colour(src, img.astype(np.float32), mask, strength)
    out = img.astype(np.float32) * (1 - mask[..., None]) + src * mask[..., None]
    out = np.where(mask[..., None] > 0, out, img.astype(np.float32))
    return np.clip(out.round(), 0, 255).astype(np.uint8), mask, flags.astype(np.int64)


def region_targets(flags: np.ndarray) -> np.ndarray:
    """4 file-name flags (left eye, right eye, nose, mouth) -> 3 targets (eyes, nose, mouth).

    The eyes are merged: a horizontal flip (training augmentation) swaps left and right.
    """
    f = np.asarray(flags, np.float32).reshape(-1, 4)
    return np.stack([np.maximum(f[:, 0], f[:, 1]), f[:, 2], f[:, 3]], axis=1)


def parse_region_flags(regions: np.ndarray) -> np.ndarray:
    """'1101'-style strings (bytes or str; reals '0000') -> (N, 4) float32 flags."""
    rows = [r.decode() if isinstance(r, bytes) else str(r) for r in np.asarray(regions).ravel()]
    out = np.zeros((len(rows), 4), np.float32)
    for i, text in enumerate(rows):
        digits = [c == "1" for c in text[:4]]
        out[i, : len(digits)] = digits
    return out


def add_self_blended(
    images: np.ndarray,
    labels: np.ndarray,
    flags: np.ndarray,
    rate: float,
    rng: np.random.Generator,
    donor_share: float = 0.5,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Append a self-blended fake for each real of a batch with probability `rate`.

    Fakes are made from this batch's reals only (the training side: no evaluation image can
    leak in); half of them (`donor_share`) paste from another real of the batch, the rest
    from a jittered copy of the same face. Returns the grown (images, labels, flags).
    """
    images = np.asarray(images)
    labels = np.asarray(labels, np.float32).reshape(-1, 1)
    flags = np.asarray(flags, np.float32).reshape(-1, 4)
    reals = np.flatnonzero(labels[:, 0] < 0.5)
    picked = reals[rng.uniform(size=len(reals)) < rate]
    if len(picked) == 0:
        return images, labels, flags
    new_images, new_flags = [], []
    for i in picked:
        donor = None
        if len(reals) > 1 and rng.uniform() < donor_share:
            donor = images[rng.choice(reals[reals != i])]
        fake, _, fake_flags = make_self_blended(images[i], rng, donor=donor)
        new_images.append(fake)
        new_flags.append(fake_flags.astype(np.float32))
    return (
        np.concatenate([images, np.stack(new_images)]),
        np.concatenate([labels, np.ones((len(picked), 1), np.float32)]),
        np.concatenate([flags, np.stack(new_flags)]),
    )
