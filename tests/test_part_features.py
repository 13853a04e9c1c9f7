"""Part features: one row per part, measured against the same photo, NaN without a face."""

from __future__ import annotations

import numpy as np
import pytest

from fakeface.models.part_features import (
    FEATURE_NAMES,
    N_PART_FEATURES,
    PART_POINTS,
    part_features,
)
from fakeface.outputs import PART_NAMES


@pytest.fixture(scope="module")
def face() -> tuple[np.ndarray, np.ndarray]:
    """A drawn 600 px face and its mesh."""
    from fakeface.landmarks import FaceMesher
    from fakeface.synth import render_face

    pixels, _ = render_face(np.random.default_rng(3), 600)
    mesh = FaceMesher().mesh_array(pixels)
    assert mesh is not None
    return pixels, mesh


def test_no_face_is_a_nan_row_per_part() -> None:
    out = part_features(np.zeros((64, 64, 3), np.uint8), None)
    assert out.shape == (len(PART_NAMES), N_PART_FEATURES) and np.isnan(out).all()
    assert len(FEATURE_NAMES) == N_PART_FEATURES


def test_rows_are_finite_and_name_each_part(face) -> None:
    pixels, mesh = face
    out = part_features(pixels, mesh)
    assert out.shape == (len(PART_NAMES), N_PART_FEATURES) and out.dtype == np.float32
    assert np.isfinite(out).all()


def test_a_recoloured_nose_moves_the_nose_row_only(face) -> None:
    """A pasted part differs from its own face: shift the nose's colour and the nose's row
    reads it far more than any other part's."""
    pixels, mesh = face
    before = part_features(pixels, mesh)
    edited = pixels.astype(np.int16)
    pts = mesh[list(PART_POINTS["nose"])]
    (x0, y0), (x1, y1) = pts.min(0).astype(int), pts.max(0).astype(int)
    edited[y0:y1, x0:x1] += np.array([40, -10, -30], np.int16)
    after = part_features(np.clip(edited, 0, 255).astype(np.uint8), mesh)
    col = FEATURE_NAMES.index("surround_dcr")
    nose = PART_NAMES.index("nose")
    moved = abs(after[nose, col] - before[nose, col])
    assert moved > 5
    for part in ("left_eye", "right_eye", "mouth"):  # their surrounds graze the nose at most
        k = PART_NAMES.index(part)
        assert abs(after[k, col] - before[k, col]) < 0.3 * moved


def test_noise_added_inside_the_mouth_raises_its_noise_ratio(face) -> None:
    pixels, mesh = face
    before = part_features(pixels, mesh)
    noisy = pixels.astype(np.float32)
    pts = mesh[list(PART_POINTS["mouth"])]
    (x0, y0), (x1, y1) = pts.min(0).astype(int), pts.max(0).astype(int)
    rng = np.random.default_rng(0)
    noisy[y0:y1, x0:x1] += rng.normal(0, 12, noisy[y0:y1, x0:x1].shape)
    after = part_features(np.clip(noisy, 0, 255).astype(np.uint8), mesh)
    col = FEATURE_NAMES.index("surround_noise")
    mouth = PART_NAMES.index("mouth")
    assert after[mouth, col] > before[mouth, col] + 0.3


def test_the_same_edit_reads_alike_on_a_brighter_photo(face) -> None:
    """Differences within one photo: a global brightness change leaves colour gaps alone."""
    pixels, mesh = face
    brighter = np.clip(pixels.astype(np.int16) + 20, 0, 255).astype(np.uint8)
    a, b = part_features(pixels, mesh), part_features(brighter, mesh)
    for name in ("surround_dy", "surround_dcb", "skin_dcr", "counterpart_dy"):
        col = FEATURE_NAMES.index(name)
        np.testing.assert_allclose(a[:, col], b[:, col], atol=2.0)


def test_the_compiled_window_pass_equals_plain_masks() -> None:
    """window_sums against a plain numpy statement: per band a boolean mask of the radius,
    the planes as float32 fused multiply-adds (what BLAS's sgemm gives on an FMA machine;
    float64 sums of a float32 and a float32 times a byte are exact), edge-padded
    neighbours, bins clipped into the end bins."""
    from fakeface.models.window_sums import YCC, window_sums

    rng = np.random.default_rng(5)
    rgb = rng.integers(0, 256, (90, 120, 3)).astype(np.uint8)
    rgb[:30] = rgb[:30, :, :1]  # grey rows: chroma lies on a bin edge (0) up to rounding
    window = (slice(7, 81), slice(11, 103))
    centre, half = np.array([60.3, 44.1]), np.array([21.7, 13.2])
    edges = np.array([0.0, 0.7, 1.0, 1.3, 2.2])
    count, sums, hists = window_sums(rgb, window, centre, half, edges, 16, 8)

    channels = rgb[window].astype(np.float64).transpose(2, 0, 1)
    ycc = np.zeros((3, *channels.shape[1:]), np.float32)
    for k in range(3):
        for c in range(3):
            ycc[k] = (ycc[k].astype(np.float64) + np.float64(YCC[k, c]) * channels[c]).astype(
                np.float32
            )
    y = ycc[0]
    p = np.pad(y, 1, mode="edge")
    noise = np.abs(y - 0.25 * (p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:]))
    grad = np.abs(p[2:, 1:-1] - p[:-2, 1:-1]) + np.abs(p[1:-1, 2:] - p[1:-1, :-2])
    yy, xx = np.mgrid[window].astype(np.float32)
    radius = np.hypot((xx - np.float32(centre[0])) / np.float32(half[0]),
                      (yy - np.float32(centre[1])) / np.float32(half[1]))  # fmt: skip
    planes = (y, y * y, ycc[1], ycc[2], noise, grad)
    for band, (lo, hi) in enumerate(zip(edges, [*edges[1:], np.inf], strict=True)):
        mask = (radius >= lo) & (radius < hi)
        assert count[band] == mask.sum()
        expected = [v[mask].astype(np.float64).sum() for v in planes]
        np.testing.assert_allclose(sums[:, band], expected, rtol=1e-9, atol=1e-6)
        for k, (v, lo_v, hi_v, bins) in enumerate(
            ((y, 0.0, 256.0, 16), (ycc[1], -40.0, 40.0, 8), (ycc[2], -40.0, 40.0, 8))
        ):
            index = np.clip(((v[mask] - lo_v) * (bins / (hi_v - lo_v))).astype(int), 0, bins - 1)
            np.testing.assert_array_equal(hists[k, band, :bins], np.bincount(index, minlength=bins))
    assert count.sum() == y.size


def test_the_kernels_radius_is_float32_hypot() -> None:
    """The window pass rounds sqrt(dx^2 + dy^2) from double to float32 instead of calling
    hypot: the same bands only if that is np.hypot on float32, value for value."""
    rng = np.random.default_rng(0)
    dx = rng.uniform(-4, 4, 1_000_000).astype(np.float32)
    dy = (rng.uniform(-4, 4, 1_000_000) * rng.choice([1e-6, 1.0, 1e3], 1_000_000)).astype(
        np.float32
    )
    wide, tall = dx.astype(np.float64), dy.astype(np.float64)
    np.testing.assert_array_equal(
        np.sqrt(wide * wide + tall * tall).astype(np.float32), np.hypot(dx, dy)
    )
