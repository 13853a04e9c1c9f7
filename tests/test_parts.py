"""Face-part statistics: exact values on hand-made meshes, the layer, the memo, the variant."""

from __future__ import annotations

import numpy as np
import pytest

from fakeface.models import parts
from fakeface.models.parts import (
    N_FEATURES,
    PARTS,
    REGION_STATS,
    RING_STATS,
    RINGS,
    SKIN,
    part_statistics,
)

SIZE = 400
# Where each part's points sit on the hand-made mesh: (x0, y0, x1, y1) corners.
BOXES = {
    "left_eye": (120, 140, 170, 160),
    "right_eye": (230, 140, 280, 160),
    "nose": (185, 170, 215, 230),
    "mouth": (160, 260, 240, 290),
    "left_cheek": (110, 210, 130, 230),
    "right_cheek": (270, 210, 290, 230),
    "forehead": (190, 80, 210, 100),
    "chin": (190, 330, 210, 345),
}


def hand_mesh() -> np.ndarray:
    """A (468, 2) mesh whose part points span BOXES (corners and centre), the rest at 0."""
    mesh = np.zeros((468, 2))
    for name, idx in {**PARTS, **SKIN}.items():
        x0, y0, x1, y1 = BOXES[name]
        spots = [(x0, y0), (x1, y1), (x0, y1), (x1, y0), ((x0 + x1) / 2, (y0 + y1) / 2)]
        for k, i in enumerate(idx):
            mesh[i] = spots[k % len(spots)]
    # the eye centres read by the inter-ocular distance: corners 33/133 and 362/263
    mesh[[33, 133]] = [(120, 150), (170, 150)]
    mesh[[362, 263]] = [(230, 150), (280, 150)]
    return mesh


def grey(value: float = 120.0) -> np.ndarray:
    return np.full((SIZE, SIZE, 3), value, np.float32)


def region(features: np.ndarray, name: str) -> np.ndarray:
    k = list({**PARTS, **SKIN}).index(name)
    return features[k * REGION_STATS : (k + 1) * REGION_STATS]


def rings(features: np.ndarray, part: str) -> np.ndarray:
    start = parts.N_REGION + list(PARTS).index(part) * (len(RINGS) - 1) * RING_STATS
    return features[start : start + (len(RINGS) - 1) * RING_STATS].reshape(-1, RING_STATS)


def test_no_mesh_is_nan_and_a_flat_face_has_flat_statistics() -> None:
    assert np.isnan(part_statistics(grey(), None)).all()
    f = part_statistics(grey(), hand_mesh())
    assert f.shape == (N_FEATURES,) and np.isfinite(f).all()
    np.testing.assert_allclose(region(f, "nose"), [120, 0, 0, 0, 0], atol=1e-3)
    np.testing.assert_allclose(rings(f, "mouth")[:-1], 0, atol=1e-4)


def test_a_recoloured_eye_shows_in_its_region_and_the_eye_difference_not_the_nose() -> None:
    image = grey()
    image[:, :178, 0] += 40.0  # redder left side: the left eye's window, not the nose's
    f = part_statistics(image, hand_mesh())
    left, right = region(f, "left_eye"), region(f, "right_eye")
    assert left[2] == pytest.approx(0.5 * 40, abs=0.5)  # Cr rises by 0.5 per unit of red
    assert right[2] == pytest.approx(0.0, abs=1e-3)
    n_regions = len(PARTS) + len(SKIN)
    eye_difference = f[n_regions * REGION_STATS : (n_regions + 1) * REGION_STATS]
    np.testing.assert_allclose(eye_difference, left - right, atol=1e-4)
    np.testing.assert_allclose(region(f, "nose"), [120, 0, 0, 0, 0], atol=1e-3)


def test_noise_pasted_inside_the_nose_raises_its_inner_ring_against_the_outer() -> None:
    image = grey()
    rng = np.random.default_rng(0)
    x0, y0, x1, y1 = BOXES["nose"]
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    inner = np.hypot((xx - cx) / ((x1 - x0) / 2 + 1), (yy - cy) / ((y1 - y0) / 2 + 1)) < 0.6
    image[inner] += rng.normal(0, 10, (int(inner.sum()), 1)).astype(np.float32)
    nose = rings(part_statistics(image, hand_mesh()), "nose")
    assert nose[0, 0] > 1.5  # log |high-pass| of the inner ring above the outer ring's
    assert nose[-1, 0] == pytest.approx(0.0, abs=1e-6)  # the outer ring is still flat
    mouth = rings(part_statistics(image, hand_mesh()), "mouth")
    np.testing.assert_allclose(mouth[:-1], 0, atol=1e-4)


def test_mesh_at_most_finds_the_mesh_on_a_small_copy_in_the_images_pixels() -> None:
    from PIL import Image

    class Recorder:
        def mesh(self, image):
            self.size = image.size
            return np.tile([image.size[0] / 2, image.size[1] / 4], (468, 1))

    recorder = Recorder()
    mesh = parts.mesh_at_most(recorder, Image.new("RGB", (600, 450)), 320)
    assert recorder.size == (320, 240)
    np.testing.assert_allclose(mesh[0], [300, 112.5])
    small = parts.mesh_at_most(recorder, Image.new("RGB", (200, 100)), 320)
    assert recorder.size == (200, 100) and small[0].tolist() == [100, 25]


def test_the_memo_answers_repeats_without_the_mesh_and_stays_bounded(monkeypatch) -> None:
    memo = parts._Memo(size=2)
    calls = []

    class Mesher:
        def mesh(self, image):
            calls.append(image.size)
            return hand_mesh() * image.size[0] / SIZE  # found on the small copy

    memo.mesher = Mesher()
    a, b, c = grey(100), grey(110), grey(120)
    first = memo.features(a)
    assert np.isfinite(first).all() and calls == [(320, 320)]
    assert np.array_equal(memo.features(a), first) and len(calls) == 1
    memo.features(b)
    memo.features(c)
    assert len(memo.items) == 2
    memo.features(a)  # evicted: computed again
    assert len(calls) == 4


@pytest.fixture(scope="module")
def drawn_faces() -> np.ndarray:
    from fakeface.synth import render_face

    faces = [render_face(np.random.default_rng(s), 256)[0] for s in range(5)]
    return np.stack([*faces, np.full((256, 256, 3), 128, np.uint8)])


def test_layer_fills_faceless_rows_with_the_training_mean(drawn_faces) -> None:
    from fakeface.models.parts import FacePartStatistics, batch_part_statistics

    raw = batch_part_statistics(drawn_faces.astype(np.float32))
    assert np.isfinite(raw[:5]).all() and np.isnan(raw[5]).all()  # the blank has no face
    layer = FacePartStatistics()
    layer.adapt(raw)
    out = np.asarray(layer(drawn_faces.astype(np.float32)))
    np.testing.assert_allclose(out[:5], raw[:5], rtol=1e-6)
    np.testing.assert_allclose(out[5], raw[:5].mean(axis=0), rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["part_seams", "part_texture"])
def test_part_variants_adapt_score_and_reload_identically(variant, drawn_faces, tmp_path):
    import keras

    from fakeface.models.factory import build_model
    from fakeface.models.parts import adapt_parts
    from fakeface.models.texture import adapt_kernels

    model = build_model(variant)
    assert adapt_parts(model, drawn_faces, 4) == 1
    assert adapt_kernels(model, drawn_faces, 4) == (2 if variant == "part_texture" else 1)
    scores = model.predict(drawn_faces, verbose=0)
    assert scores.shape == (6, 1) and np.all((scores > 0) & (scores < 1))
    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(again.predict(drawn_faces, verbose=0), scores, rtol=1e-6)
