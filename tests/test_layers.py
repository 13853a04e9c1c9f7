"""Custom layers and augmentations: shape/dtype/range, training gating, config round trips."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from fakeface.models import layers as L
from fakeface.models.augment import AUGMENTATIONS, DEFAULT_AUGMENTATION_PROBS, build_augmenter

NAMES = sorted(AUGMENTATIONS)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    """Two seeded 32x32 RGB images: a smooth gradient plus noise (float32, 0..255 integers)."""
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:32, 0:32]
    smooth = np.stack([yy * 8, xx * 8, (yy + xx) * 4], axis=-1).astype("float32")
    noisy = np.clip(smooth + rng.normal(0, 20, (2, 32, 32, 3)), 0, 255)
    return np.round(noisy).astype("float32")


def _np(x) -> np.ndarray:
    return keras.ops.convert_to_numpy(x)


def test_registry_has_the_17_augmentations():
    assert len(AUGMENTATIONS) == 17
    assert list(DEFAULT_AUGMENTATION_PROBS) != [] and set(DEFAULT_AUGMENTATION_PROBS) == set(
        AUGMENTATIONS
    )
    assert all(0.0 <= p <= 1.0 for p in DEFAULT_AUGMENTATION_PROBS.values())
    for name, cls in AUGMENTATIONS.items():
        assert cls.__name__ == name
        assert keras.saving.get_registered_object(f"fakeface>{name}") is cls


@pytest.mark.parametrize("name", NAMES)
def test_augmentation_in_training_keeps_shape_dtype_range_and_changes(images, name):
    layer = AUGMENTATIONS[name](probability=1.0, seed=3)
    out = _np(layer(images, training=True))
    assert out.shape == images.shape
    assert out.dtype == np.float32
    assert np.isfinite(out).all()
    assert out.min() >= 0.0 and out.max() <= 255.0
    assert not np.allclose(out, images, atol=0.5)


@pytest.mark.parametrize("name", NAMES)
def test_augmentation_is_identity_outside_training(images, name):
    layer = AUGMENTATIONS[name](probability=1.0, seed=3)
    for training in (False, None):
        np.testing.assert_array_equal(_np(layer(images, training=training)), images)


@pytest.mark.parametrize("name", NAMES)
def test_augmentation_config_round_trip(images, name):
    layer = AUGMENTATIONS[name](probability=0.7, seed=11, name="aug")
    config = layer.get_config()
    clone = AUGMENTATIONS[name].from_config(config)
    assert clone.get_config() == config
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(again) is type(layer) and again.get_config() == config
    # same seed -> same draws
    np.testing.assert_allclose(
        _np(layer(images, training=True)), _np(clone(images, training=True)), atol=1e-4
    )


def test_uint8_and_unbatched_inputs_keep_dtype_and_shape(images):
    img8 = images.astype("uint8")
    for name in ("Invert", "JpegCompression", "Sharpen"):
        layer = AUGMENTATIONS[name](seed=1)
        out = layer(img8, training=True)
        assert out.dtype == "uint8" and tuple(out.shape) == img8.shape
        single = layer(images[0], training=True)
        assert tuple(single.shape) == images[0].shape


def test_probability_is_per_image():
    x = np.full((16, 8, 8, 3), 40.0, dtype="float32")
    out = _np(L.Invert(probability=0.5, seed=5)(x, training=True))
    inverted = np.all(out == 215.0, axis=(1, 2, 3))
    unchanged = np.all(out == 40.0, axis=(1, 2, 3))
    assert np.all(inverted | unchanged)
    assert 0 < inverted.sum() < 16
    none = _np(L.Invert(probability=0.0, seed=5)(x, training=True))
    np.testing.assert_array_equal(none, x)


def test_bad_parameters_raise():
    with pytest.raises(ValueError, match="probability"):
        L.Invert(probability=1.5)
    with pytest.raises(ValueError, match="quality"):
        L.JpegCompression(quality=(0, 50))
    with pytest.raises(ValueError, match="low"):
        L.Solarize(threshold=(200, 100))


def test_jpeg_error_grows_as_quality_drops():
    yy, xx = np.mgrid[0:40, 0:40]
    smooth = np.stack([yy * 5, xx * 5, 255 - yy * 5], -1)[None].astype("float32")
    err = {}
    for q in (10, 95):
        out = _np(L.JpegCompression(quality=(q, q), seed=0)(smooth, training=True))
        err[q] = np.abs(out - smooth).mean()
    assert err[95] < 3.0 and err[10] > 2 * err[95]


def _imgaug_directed_kernel(direction: float) -> np.ndarray:
    """imgaug's DirectedEdgeDetect kernel, transcribed in numpy (reference)."""
    rad = np.deg2rad(int(direction * 360) % 360)
    vec = np.array([np.cos(rad - 0.5 * np.pi), np.sin(rad - 0.5 * np.pi)])
    kernel = np.zeros((3, 3))
    for x in (-1, 0, 1):
        for y in (-1, 0, 1):
            if (x, y) != (0, 0):
                cell = np.array([x, y]) / math.hypot(x, y)
                angle = np.arccos(np.clip(cell @ vec, -1, 1))
                kernel[y + 1, x + 1] = (1 - angle / np.pi) ** 4
    kernel = -kernel / kernel.sum()
    kernel[1, 1] = 1
    return kernel


@pytest.mark.parametrize("direction", [0.0, 0.13, 0.5, 0.77])
def test_directed_edge_kernel_matches_imgaug(direction):
    layer = L.DirectedEdgeDetect(direction=(direction, direction), seed=0)
    kernel = _np(layer._kernels(1))[0]
    np.testing.assert_allclose(kernel, _imgaug_directed_kernel(direction), atol=1e-5)


def test_clahe_leaves_flat_images_and_stretches_low_contrast():
    flat = np.full((1, 32, 32, 3), 200.0, dtype="float32")
    out = _np(L.AllChannelsCLAHE(clip_limit=(3, 3), seed=0)(flat, training=True))
    np.testing.assert_allclose(out, flat, atol=1e-2)
    rng = np.random.default_rng(0)
    dull = np.repeat(100 + rng.uniform(-5, 5, (1, 32, 32, 1)), 3, axis=-1).astype("float32")
    for layer in (L.CLAHE, L.AllChannelsCLAHE):
        out = _np(layer(clip_limit=(3, 3), seed=0)(dull, training=True))
        assert out.std() > 2.0 * dull.std()
        assert abs(out.mean() - dull.mean()) < 2.0


def test_caffe_preprocess_and_cast_layers():
    rgb = np.array([[[[10.0, 20.0, 30.0]]]], dtype="float32")
    out = _np(L.CaffePreprocess()(rgb))
    np.testing.assert_allclose(out[0, 0, 0], [30 - 103.939, 20 - 116.779, 10 - 123.68], rtol=1e-6)
    assert L.CastToFloat32()(rgb.astype("uint8")).dtype == "float32"
    for layer in (L.CaffePreprocess(name="p"), L.CastToFloat32(name="c")):
        clone = type(layer).from_config(layer.get_config())
        assert clone.get_config() == layer.get_config()


def test_pipeline_applies_all_and_round_trips(images):
    probs = {name: 1.0 for name in DEFAULT_AUGMENTATION_PROBS}
    pipe = build_augmenter(probs, seed=4)
    out = _np(pipe(images, training=True))
    assert out.shape == images.shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 255.0 and not np.allclose(out, images)
    np.testing.assert_array_equal(_np(pipe(images, training=False)), images)
    assert len(pipe.augmenters) == 17

    config = pipe.get_config()
    assert config["probs"] == probs and config["seed"] == 4
    assert list(config["probs"]) == list(probs)  # order = order of application
    clone = L.AugmentationPipeline.from_config(config)
    np.testing.assert_allclose(_np(clone(images, training=True)), out, atol=1e-3)


def test_pipeline_skips_zero_probabilities_and_rejects_bad_input():
    pipe = build_augmenter({"Invert": 0.0, "Sharpen": 0.5}, seed=None)
    assert [type(layer).__name__ for layer in pipe.augmenters] == ["Sharpen"]
    with pytest.raises(ValueError, match="'Blurr'"):
        build_augmenter({"Blurr": 0.5}, seed=0)
    with pytest.raises(ValueError, match="'Invert'"):
        build_augmenter({"Invert": 2.0}, seed=0)
