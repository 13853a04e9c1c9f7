"""Fixed texture descriptors and the RBF kernel layer (fakeface.models.texture)."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from fakeface.models.factory import build_model  # noqa: E402
from fakeface.models.texture import (  # noqa: E402
    CellStatistics,
    GradientOrientationHistogram,
    LocalBinaryPatternHistogram,
    RadialBasisKernel,
    adapt_kernels,
    kernel_layers,
)


def _rgb(grey: np.ndarray) -> np.ndarray:
    """(H, W) grey levels -> (1, H, W, 3) float32 batch."""
    return np.repeat(grey[None, :, :, None], 3, axis=-1).astype(np.float32)


def _stripes(horizontal: bool, size: int = 32, period: int = 4) -> np.ndarray:
    ramp = (np.arange(size) // (period // 2)) % 2 * 200.0 + 20.0
    grey = np.tile(ramp[:, None], (1, size)) if horizontal else np.tile(ramp[None, :], (size, 1))
    return _rgb(grey)


# ------------------------------------------------------------------------------------------
# gradient orientation histograms
# ------------------------------------------------------------------------------------------


def test_hog_votes_into_the_bin_of_the_edge_orientation():
    layer = GradientOrientationHistogram(orientations=9, cell_size=8)
    # Horizontal stripes: vertical gradients, angle pi/2, the centre of bin 4 (of 0..8).
    horizontal = np.asarray(layer(_stripes(horizontal=True)))
    assert horizontal.shape == (1, 4, 4, 9)
    assert np.all(horizontal.argmax(axis=-1) == 4)
    assert np.allclose(np.delete(horizontal, 4, axis=-1), 0.0, atol=1e-6)
    # Vertical stripes: angle 0 sits between the first and last bins (orientation wraps).
    vertical = np.asarray(layer(_stripes(horizontal=False)))
    assert np.allclose(vertical[..., 0], vertical[..., 8])
    assert np.all(vertical[..., 0] > 0) and np.allclose(vertical[..., 1:8], 0.0, atol=1e-6)


def test_hog_of_a_flat_image_is_zero_and_normalised_values_are_clipped():
    layer = GradientOrientationHistogram(cell_size=8, clip=0.2)
    flat = np.asarray(layer(_rgb(np.full((16, 24), 90.0))))
    assert flat.shape == (1, 2, 3, 9) and np.allclose(flat, 0.0)
    noise = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    out = np.asarray(layer(noise))
    assert out.min() >= 0.0 and out.max() <= 0.2 + 1e-6
    # Block normalisation: doubling the contrast leaves the map (almost) unchanged.
    brighter = np.asarray(layer(noise * 0.5)) - np.asarray(layer(noise * 0.25))
    assert np.abs(brighter).max() < 1e-3


def test_cell_layers_reject_sizes_that_are_not_whole_cells():
    with pytest.raises(ValueError, match="multiples of cell_size=8"):
        GradientOrientationHistogram(cell_size=8)(np.zeros((1, 20, 16, 3), np.float32))
    with pytest.raises(ValueError, match="orientations"):
        GradientOrientationHistogram(orientations=1)
    with pytest.raises(ValueError, match="radius"):
        LocalBinaryPatternHistogram(radius=0)


# ------------------------------------------------------------------------------------------
# local binary patterns
# ------------------------------------------------------------------------------------------


def _lbp_reference(grey: np.ndarray, radius: int) -> np.ndarray:
    """Rotation-invariant uniform LBP codes, one pixel at a time, edges mirrored."""
    r = radius
    padded = np.pad(grey, r, mode="symmetric")
    ring = [(-r, -r), (-r, 0), (-r, r), (0, r), (r, r), (r, 0), (r, -r), (0, -r)]
    codes = np.zeros(grey.shape, int)
    for i in range(grey.shape[0]):
        for j in range(grey.shape[1]):
            centre = padded[i + r, j + r]
            bits = [int(padded[i + r + dy, j + r + dx] >= centre) for dy, dx in ring]
            changes = sum(bits[k] != bits[k - 1] for k in range(8))
            codes[i, j] = sum(bits) if changes <= 2 else 9
    return codes


@pytest.mark.parametrize("radius", [1, 2])
def test_lbp_histograms_match_a_per_pixel_reference(radius):
    grey = np.random.default_rng(radius).integers(0, 256, (16, 32)).astype(np.float32)
    out = np.asarray(LocalBinaryPatternHistogram(radius=radius, cell_size=8)(_rgb(grey)))
    assert out.shape == (1, 2, 4, 10)
    codes = _lbp_reference(grey, radius)
    for ci in range(2):
        for cj in range(4):
            cell = codes[ci * 8 : (ci + 1) * 8, cj * 8 : (cj + 1) * 8]
            expected = np.bincount(cell.ravel(), minlength=10) / cell.size
            np.testing.assert_allclose(out[0, ci, cj], expected, atol=1e-6)


def test_lbp_of_a_flat_image_is_all_code_eight():
    out = np.asarray(LocalBinaryPatternHistogram(cell_size=8)(_rgb(np.full((8, 8), 7.0))))
    expected = np.zeros(10)
    expected[8] = 1.0
    np.testing.assert_allclose(out[0, 0, 0], expected)


# ------------------------------------------------------------------------------------------
# cell statistics
# ------------------------------------------------------------------------------------------


def test_cell_statistics_show_a_brighter_and_noisier_patch():
    rng = np.random.default_rng(0)
    image = np.full((1, 32, 32, 3), 100.0, np.float32)
    image[0, 8:16, 16:24] = 180.0 + rng.normal(0, 20, (8, 8, 3))
    out = np.asarray(CellStatistics(cell_size=8)(image))
    assert out.shape == (1, 4, 4, 6)
    luma, noise = out[0, ..., 0], out[0, ..., 3:]
    assert np.unravel_index(luma.argmax(), luma.shape) == (1, 2)
    assert luma[1, 2] > 0 > luma[0, 0]
    assert np.isclose(luma.sum(), 0.0, atol=1e-5)  # centred on the image mean
    assert np.unravel_index(noise[..., 0].argmax(), (4, 4)) == (1, 2)
    flat = np.asarray(CellStatistics(cell_size=8)(image * 0 + 50.0))
    assert np.allclose(flat, 0.0, atol=1e-6)


# ------------------------------------------------------------------------------------------
# the kernel layer
# ------------------------------------------------------------------------------------------


def test_kernel_matches_the_gaussian_formula_on_standardised_features():
    rng = np.random.default_rng(0)
    features = rng.normal(3.0, 2.0, (40, 6)).astype(np.float32)
    layer = RadialBasisKernel(n_prototypes=10, seed=1)
    layer.adapt(features)
    mean, scale = features.mean(0), features.std(0)
    prototypes = np.asarray(layer.prototypes)
    # The prototypes are 10 distinct examples, standardised.
    standardised = (features - mean) / scale
    matches = [
        np.flatnonzero(np.all(np.isclose(standardised, p, atol=1e-5), axis=1)) for p in prototypes
    ]
    assert all(len(m) == 1 for m in matches) and len({int(m[0]) for m in matches}) == 10
    queries = rng.normal(3.0, 2.0, (5, 6)).astype(np.float32)
    z = (queries - mean) / scale
    expected = np.exp(-((z[:, None, :] - prototypes[None]) ** 2).sum(-1) / 6)
    np.testing.assert_allclose(np.asarray(layer(queries)), expected, rtol=1e-4, atol=1e-6)
    # An example that is a prototype is at similarity 1 to it.
    own = np.asarray(layer(features[matches[0]]))
    assert np.isclose(own[0, 0], 1.0, atol=1e-5)


def test_kernel_with_fewer_examples_than_prototypes_repeats_them_and_rejects_empty():
    layer = RadialBasisKernel(n_prototypes=7)
    features = np.arange(12, dtype=np.float32).reshape(3, 4) ** 2
    layer.adapt(features)
    prototypes = np.asarray(layer.prototypes)
    np.testing.assert_allclose(prototypes[3:6], prototypes[0:3])
    # A constant feature is kept at scale 1 instead of dividing by zero.
    constant = RadialBasisKernel(n_prototypes=2)
    constant.adapt(np.ones((4, 3), np.float32))
    assert np.all(np.isfinite(np.asarray(constant(np.ones((1, 3), np.float32)))))
    with pytest.raises(ValueError, match="non-empty"):
        RadialBasisKernel().adapt(np.zeros((0, 4)))


def test_texture_kernel_model_adapts_to_training_images_and_reloads(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (12, 48, 48, 3), dtype=np.uint8)
    model = build_model("texture_kernel")
    assert [layer.name for layer in kernel_layers(model)] == ["kernel"]
    assert adapt_kernels(model, images, batch_size=4) == 1
    kernel = model.get_layer("kernel")
    assert np.asarray(kernel.prototypes).std() > 0
    # Each training image is its own prototype: similarity 1 somewhere in its row.
    features = keras.Model(model.inputs, kernel.output).predict(images, verbose=0)
    assert np.allclose(features.max(axis=1), 1.0, atol=1e-4)
    assert not any(w.trainable for w in kernel.weights)
    predictions = model.predict(images, verbose=0)
    assert predictions.shape == (12, 1) and predictions.dtype == np.float32
    path = tmp_path / "texture.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_allclose(reloaded.predict(images, verbose=0), predictions, rtol=1e-5)
    # Models without kernel layers are left alone.
    assert adapt_kernels(build_model("custom"), images) == 0


def test_texture_variants_train_only_their_heads_and_the_cnn():
    for name in ("texture_kernel", "texture_kernel_sbi"):
        model = build_model(name)
        trainable = {w.path.split("/")[0] for w in model.trainable_weights}
        assert trainable == {"kernel_logit"}, (name, trainable)
    fused = build_model("texture_residual")
    trainable = {w.path.split("/")[0] for w in fused.trainable_weights}
    assert {"kernel_logit", "cnn_logit", "stem"} <= trainable
    assert not trainable & {"hog", "lbp", "kernel"}
    images = np.random.default_rng(1).integers(0, 256, (6, 64, 64, 3), dtype=np.uint8)
    assert adapt_kernels(fused, images) == 1
    first, second = fused.predict(images, verbose=0), fused.predict(images, verbose=0)
    assert first.shape == (6, 1) and np.array_equal(first, second)  # no augmentation at inference


def _kernel_model(two_kernels: bool = False, extra_branch: bool = False):
    from fakeface.models.texture import RadialBasisKernel

    inputs = keras.Input((4,))
    logits = []
    for k in range(2 if two_kernels else 1):
        sims = RadialBasisKernel(n_prototypes=32, seed=k, name=f"k{k}")(inputs)
        logits.append(keras.layers.Dense(1, name=f"head{k}")(sims))
    if extra_branch:
        logits.append(keras.layers.Dense(1, name="linear")(inputs))
    logit = keras.layers.Add()(logits) if len(logits) > 1 else logits[0]
    return keras.Model(inputs, keras.layers.Activation("sigmoid")(logit))


def _ring_data(n: int, seed: int):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    y = (np.hypot(x[:, 0], x[:, 1]) > 1.1).astype(int)  # not linear: needs the kernel
    return x, y


@pytest.mark.parametrize("two_kernels", [False, True])
def test_fit_kernel_heads_solves_the_logistic_regression_exactly(two_kernels: bool) -> None:
    from sklearn.linear_model import LogisticRegression

    from fakeface.metrics import roc_auc
    from fakeface.models.texture import adapt_kernels, fit_kernel_heads

    x, y = _ring_data(300, 0)
    xv, yv = _ring_data(100, 1)
    model = _kernel_model(two_kernels)
    adapt_kernels(model, x)
    history = fit_kernel_heads(model, x, y, xv, yv, strengths=(10.0,))
    p = model.predict(xv, verbose=0).ravel()
    sims = [
        keras.Model(model.inputs, model.get_layer(f"k{k}").output).predict(x, verbose=0)
        for k in range(2 if two_kernels else 1)
    ]
    reference = LogisticRegression(C=10.0, max_iter=5000).fit(np.concatenate(sims, 1), y)
    sims_v = [
        keras.Model(model.inputs, model.get_layer(f"k{k}").output).predict(xv, verbose=0)
        for k in range(2 if two_kernels else 1)
    ]
    np.testing.assert_allclose(
        p, reference.predict_proba(np.concatenate(sims_v, 1))[:, 1], atol=2e-3
    )
    assert roc_auc(yv, p) > 0.9 and history["val_auc"][0] == pytest.approx(roc_auc(yv, p), abs=1e-3)
    assert set(history) == {"loss", "auc", "val_loss", "val_auc"}


def test_fit_kernel_heads_refuses_a_logit_with_another_branch() -> None:
    from fakeface.models.texture import adapt_kernels, fit_kernel_heads

    x, y = _ring_data(200, 0)
    model = _kernel_model(extra_branch=True)
    adapt_kernels(model, x)
    with pytest.raises(ValueError, match="not the sum of its kernel heads"):
        fit_kernel_heads(model, x, y, x, y)
