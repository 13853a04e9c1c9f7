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


def _batch(n_real: int, n_fake: int, size: int = 48, seed: int = 0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n_real + n_fake, size, size, 3), dtype=np.uint8)
    labels = np.array([[0.0]] * n_real + [[1.0]] * n_fake, np.float32)
    flags = np.zeros((n_real + n_fake, 4), np.float32)
    flags[n_real:] = [1, 0, 1, 0]
    return images, labels, flags


def test_add_self_blended_appends_labelled_fakes_and_keeps_the_batch():
    images, labels, flags = _batch(6, 2)
    out_i, out_l, out_f = selfblend.add_self_blended(
        images, labels, flags, 1.0, np.random.default_rng(1)
    )
    assert out_i.shape == (14, 48, 48, 3) and out_i.dtype == np.uint8
    assert np.array_equal(out_i[:8], images) and np.array_equal(out_l[:8], labels)
    assert np.array_equal(out_f[:8], flags)
    assert (out_l[8:] == 1.0).all()
    assert (out_f[8:].sum(axis=1) >= 1).all() and set(np.unique(out_f[8:])) <= {0.0, 1.0}
    # each new fake differs from every real it could come from, but only in places
    for fake in out_i[8:]:
        changed = (fake != images[:6]).any(axis=-1).mean(axis=(1, 2))
        assert changed.min() < 0.6 and changed.min() > 0.0


def test_add_self_blended_rate_zero_and_all_fake_batches_are_unchanged():
    images, labels, flags = _batch(4, 4)
    rng = np.random.default_rng(0)
    same = selfblend.add_self_blended(images, labels, flags, 0.0, rng)
    assert same[0] is images or np.array_equal(same[0], images)
    assert len(same[1]) == 8
    images, labels, flags = _batch(0, 5)
    assert len(selfblend.add_self_blended(images, labels, flags, 1.0, rng)[0]) == 5


def test_add_self_blended_rate_is_a_probability():
    images, labels, flags = _batch(200, 0, size=24)
    out = selfblend.add_self_blended(images, labels, flags, 0.25, np.random.default_rng(3))
    assert 30 <= len(out[0]) - 200 <= 70  # binomial(200, 0.25): mean 50, sd 6


def test_region_flags_parse_and_merge_the_eyes():
    flags = selfblend.parse_region_flags(np.array([b"1101", "0000", "0110", "1"], dtype=object))
    assert flags.tolist() == [[1, 1, 0, 1], [0, 0, 0, 0], [0, 1, 1, 0], [1, 0, 0, 0]]
    assert selfblend.region_targets(flags).tolist() == [[1, 0, 1], [0, 0, 0], [1, 1, 0], [1, 0, 0]]
