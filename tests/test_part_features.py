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
