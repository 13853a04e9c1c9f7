"""Tests for fakeface.selfblend (tiny synthetic images, no data set)."""

import numpy as np
import pytest

from fakeface import selfblend


def _face(h=64, w=64, seed=0):
    rng = np.random.default_rng(seed)
    base = np.full((h, w, 3), 150, np.float32) + rng.normal(0, 20, (h, w, 3))
    return np.clip(base, 0, 255).astype(np.uint8)


def test_prior_landmarks_inside_image():
    lm = selfblend.prior_landmarks(80, 100)
    assert lm.shape == (5, 2)
    assert (lm[:, 0] > 0).all() and (lm[:, 0] < 100).all()
    assert (lm[:, 1] > 0).all() and (lm[:, 1] < 80).all()


def test_region_mask_soft_in_unit_range():
    rng = np.random.default_rng(1)
    ell = selfblend.region_ellipses(selfblend.prior_landmarks(64, 64))
    for e in ell:
        m = selfblend.region_mask((64, 64), e, rng)
        assert m.shape == (64, 64) and m.dtype == np.float32
        assert m.min() >= 0.0 and m.max() <= 1.0
        assert m.max() > 0.9  # the region's core is fully replaced
        assert ((m > 0) & (m < 1)).any()  # and the edge is soft
        assert m[0, 0] == 0.0  # far corners untouched


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_only_masked_area_changes_and_flags_consistent(seed):
    img = _face(seed=seed)
    rng = np.random.default_rng(seed)
    fake, mask, flags = selfblend.make_self_blended(img, rng)
    assert fake.shape == img.shape and fake.dtype == np.uint8
    assert mask.shape == img.shape[:2] and mask.min() >= 0 and mask.max() <= 1
    assert flags.shape == (4,) and set(np.unique(flags)) <= {0, 1} and flags.sum() >= 1
    outside = mask == 0
    assert np.array_equal(fake[outside], img[outside])
    assert (fake != img).any()
    # every flagged region has mask weight at its centre
    ell = selfblend.region_ellipses(selfblend.prior_landmarks(64, 64))
    for k, (cx, cy, _, _) in enumerate(ell):
        if flags[k]:
            assert mask[round(cy), round(cx)] > 0.5


def test_donor_and_landmarks():
    img, donor = _face(seed=1), _face(seed=2)
    lm = selfblend.prior_landmarks(64, 64)
    fake, mask, _ = selfblend.make_self_blended(
        img, np.random.default_rng(0), landmarks=lm, donor=donor, donor_landmarks=lm + 1
    )
    assert np.array_equal(fake[mask == 0], img[mask == 0])
    with pytest.raises(ValueError):
        selfblend.make_self_blended(img, np.random.default_rng(0), donor=donor[:10])


def test_deterministic_for_seed():
    img = _face()
    a = selfblend.make_self_blended(img, np.random.default_rng(7))
    b = selfblend.make_self_blended(img, np.random.default_rng(7))
    c = selfblend.make_self_blended(img, np.random.default_rng(8))
    for u, v in zip(a, b, strict=True):
        assert np.array_equal(u, v)
    assert not all(np.array_equal(u, v) for u, v in zip(a, c, strict=True))


def test_rejects_bad_shape():
    with pytest.raises(ValueError):
        selfblend.make_self_blended(np.zeros((8, 8), np.uint8), np.random.default_rng(0))
