"""Per-part kernel heads: fitted on part labels, noisy-OR for the image, prior without faces."""

from __future__ import annotations

import numpy as np
import pytest

from fakeface.models.part_heads import (
    face_found,
    fill_missing,
    fit_part_heads,
    noisy_or,
    part_labels,
)
from fakeface.outputs import PART_NAMES


def test_noisy_or_and_part_labels() -> None:
    np.testing.assert_allclose(noisy_or(np.array([[0.5, 0.5, 0.0, 0.0]])), [0.75])
    np.testing.assert_allclose(noisy_or(np.zeros((1, 4))), [0.0])
    flags = np.array([[1, 0, 1, 0], [1, 1, 1, 1]])
    np.testing.assert_array_equal(part_labels(flags, np.array([1, 0])), [[1, 0, 1, 0], [0] * 4])


def test_missing_rows_are_filled_and_flagged() -> None:
    x = np.ones((3, 4, 2), np.float32)
    x[1] = np.nan
    np.testing.assert_array_equal(face_found(x), [True, False, True])
    filled = fill_missing(x, np.full((4, 2), 7.0, np.float32))
    assert (filled[1] == 7).all() and (filled[0] == 1).all()


def _data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Features where part k's first feature is raised exactly when part k is flagged."""
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, 4)) < 0.3).astype(int)
    x = rng.normal(size=(n, 4, 5)).astype(np.float32)
    x[:, :, 0] += 3.0 * labels
    return x, labels


def test_each_head_reads_its_own_part() -> None:
    from fakeface.metrics import roc_auc

    x, y = _data(400, 0)
    vx, vy = _data(120, 1)
    heads = fit_part_heads(x, y, vx, vy, n_prototypes=64)
    tx, ty = _data(200, 2)
    out = heads.predict(tx)
    assert out.shape == (200, 1 + len(PART_NAMES))
    for k in range(4):
        assert roc_auc(ty[:, k], out[:, 1 + k]) > 0.9
        other = (k + 1) % 4  # a head must not read another part's flag
        assert roc_auc(ty[:, other], out[:, 1 + k]) < 0.7
    np.testing.assert_allclose(out[:, 0], noisy_or(out[:, 1:]), atol=1e-6)
    assert roc_auc(ty.max(axis=1), out[:, 0]) > 0.9


def test_an_image_without_a_face_gets_the_average_face_verdict() -> None:
    x, y = _data(200, 0)
    heads = fit_part_heads(x, y, x[:50], y[:50], n_prototypes=32)
    missing = np.full((1, 4, 5), np.nan, np.float32)
    np.testing.assert_allclose(heads.predict(missing), heads.predict(heads.fill[None]))


def test_no_face_in_training_gives_the_prior() -> None:
    x = np.full((10, 4, 5), np.nan, np.float32)
    y = np.zeros((10, 4), int)
    y[:5, 2] = 1
    heads = fit_part_heads(x, y, x, y, n_prototypes=8)
    out = heads.predict(np.zeros((2, 4, 5), np.float32))
    assert out[0, 1 + 2] == pytest.approx(0.5, abs=1e-3)
    assert out[0, 1] == pytest.approx(1e-3, abs=1e-4)
