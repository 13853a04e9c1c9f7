"""Fixed (not learned) texture descriptors as Keras layers: HOG-like gradient-orientation
histograms, local-binary-pattern histograms and per-cell colour/noise statistics.

They are the classic features that did best in the accuracy study (an RBF SVM on HOG + LBP +
block statistics), rebuilt in-graph so a learned head can be fused with them and the scored
model stays one ``keras.Model``: no feature code outside the model to drift from training.
Every layer takes float32 RGB in [0, 255], shape (batch, H, W, 3) with H and W multiples of
its cell size, and returns a (batch, H / cell, W / cell, channels) map. Nothing in them is
trained (their one weight is a constant gain, for Grad-CAM).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import keras
import numpy as np
from keras import ops

register = keras.saving.register_keras_serializable(package="fakeface")

# ITU-R BT.601 luma, as PIL's "L" conversion uses.
_LUMA = (0.299, 0.587, 0.114)


def _grey(x):
    r, g, b = x[..., 0:1], x[..., 1:2], x[..., 2:3]
    return (_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b) / 255.0


def _offset_differences(x, offsets: list[tuple[tuple[int, int], tuple[int, int]]]):
    """x[i + a] - x[i + b] for each pair of offsets (a, b), as channels of one convolution.

    ``x`` is (batch, H, W, 1); edges are mirrored (the pixel beyond the border repeats the
    border pixel). One padding and one small fixed convolution replace a padded copy per
    offset: with the scatter-add histograms below, this made the descriptors about 2x faster
    on CPU.
    """
    radius = max(abs(v) for pair in offsets for offset in pair for v in offset)
    size = 2 * radius + 1
    kernel = np.zeros((size, size, 1, len(offsets)), np.float32)
    for k, ((ay, ax), (by, bx)) in enumerate(offsets):
        kernel[radius + ay, radius + ax, 0, k] += 1.0
        kernel[radius + by, radius + bx, 0, k] -= 1.0
    pad = [[0, 0], [radius, radius], [radius, radius], [0, 0]]
    padded = ops.pad(x, pad, mode="symmetric")
    return ops.conv(padded, ops.convert_to_tensor(kernel), strides=1, padding="valid")


def _cell_histogram(index, weight, bins: int, cell: int):
    """Per-cell histograms: mean over each cell of ``weight`` voted into bin ``index``.

    ``index`` (batch, H, W) int32 in [0, bins), ``weight`` (batch, H, W) float32. One
    scatter-add (bincount) instead of a (batch, H, W, bins) one-hot map and a pooling.
    """
    batch = ops.shape(index)[0]
    h, w = index.shape[1], index.shape[2]
    rows, cols = h // cell, w // cell
    cell_id = (np.arange(h) // cell)[:, None] * cols + (np.arange(w) // cell)[None, :]
    offsets = ops.arange(batch, dtype="int32")[:, None, None] * (rows * cols)
    flat = (offsets + ops.convert_to_tensor(cell_id.astype(np.int32))[None]) * bins + index
    total = batch * (rows * cols * bins)
    sums = ops.segment_sum(ops.reshape(weight, (-1,)), ops.reshape(flat, (-1,)), num_segments=total)
    return ops.reshape(sums, (batch, rows, cols, bins)) / float(cell * cell)


def _cell_mean(x, cell: int):
    return ops.average_pool(x, pool_size=cell, strides=cell, padding="valid")


class _CellLayer(keras.layers.Layer):
    spatial_descriptor = True  # its map can be explained by Grad-CAM (fakeface.evaluate)

    def __init__(self, cell_size: int = 8, **kwargs: Any) -> None:
        kwargs.setdefault("dtype", "float32")
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        if int(cell_size) < 1:
            raise ValueError(f"cell_size must be >= 1, got {cell_size}")
        self.cell_size = int(cell_size)

    def build(self, input_shape) -> None:
        # A constant 1 the map is multiplied by. It makes the map a function of a model
        # variable, so a GradientTape watching the model's variables records everything
        # downstream of it: Grad-CAM (fakeface.evaluate) needs the gradient at this map.
        self.gain = self.add_weight(name="gain", shape=(), initializer="ones", trainable=False)

    def _check(self, inputs) -> None:
        h, w = inputs.shape[1], inputs.shape[2]
        if h is None or w is None or h % self.cell_size or w % self.cell_size:
            raise ValueError(
                f"{type(self).__name__} needs a static height and width that are multiples of "
                f"cell_size={self.cell_size}; got {h}x{w}"
            )

    def _out_hw(self, input_shape) -> tuple[int | None, int | None]:
        h, w = input_shape[1], input_shape[2]
        return (
            None if h is None else h // self.cell_size,
            None if w is None else w // self.cell_size,
        )

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "cell_size": self.cell_size}


@register
class GradientOrientationHistogram(_CellLayer):
    """HOG-like map: per cell, gradient magnitude soft-binned by unsigned orientation.

    Central-difference gradients of the grey image; each pixel votes its magnitude into the
    two nearest of ``orientations`` bins over [0, pi) (linear interpolation, as in HOG). Each
    cell histogram is divided by the L2 energy of its 3 x 3 cell neighbourhood (overlapping
    block normalisation) and clipped at ``clip`` (HOG's L2-Hys).
    """

    def __init__(
        self, orientations: int = 9, cell_size: int = 8, clip: float = 0.2, **kwargs: Any
    ) -> None:
        super().__init__(cell_size=cell_size, **kwargs)
        if int(orientations) < 2:
            raise ValueError(f"orientations must be >= 2, got {orientations}")
        self.orientations = int(orientations)
        self.clip = float(clip)

    def call(self, inputs):
        self._check(inputs)
        grey = _grey(ops.cast(inputs, "float32"))
        gradients = _offset_differences(grey, [((0, 1), (0, -1)), ((1, 0), (-1, 0))])
        gx, gy = gradients[..., 0:1], gradients[..., 1:2]
        # No gradient flows back into the image, so sqrt at 0 needs no epsilon (and a flat
        # image then has an all-zero map).
        magnitude = ops.sqrt(gx * gx + gy * gy)
        angle = ops.arctan2(gy, gx)  # (-pi, pi]
        angle = ops.where(angle < 0, angle + math.pi, angle)  # unsigned: [0, pi]
        n = self.orientations
        position = (angle * (n / math.pi) - 0.5)[..., 0]  # bin k is centred at (k + 0.5) pi / n
        lower = ops.floor(position)
        upper_share = (position - lower) * magnitude[..., 0]
        lower_share = magnitude[..., 0] - upper_share
        lower = ops.cast(lower, "int32")
        # Orientation is circular: bin -1 is bin n - 1, bin n is bin 0.
        hist = _cell_histogram((lower + n) % n, lower_share, n, self.cell_size)
        hist = hist + _cell_histogram((lower + 1) % n, upper_share, n, self.cell_size)
        energy = ops.sum(hist * hist, axis=-1, keepdims=True)
        block = ops.average_pool(energy, pool_size=3, strides=1, padding="same") * 9.0
        return ops.minimum(hist / ops.sqrt(block + 1e-6), self.clip) * self.gain

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self._out_hw(input_shape), self.orientations)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "orientations": self.orientations, "clip": self.clip}


# 8 neighbours at Chebyshev distance `radius`, in circular order.
def _ring(radius: int) -> list[tuple[int, int]]:
    r = radius
    return [(-r, -r), (-r, 0), (-r, r), (0, r), (r, r), (r, 0), (r, -r), (0, -r)]


@functools.cache
def _uniform_codes() -> np.ndarray:
    """Rotation-invariant uniform code of each 8-bit ring pattern: its number of ones when
    it has at most 2 transitions round the ring, else 9."""
    codes = np.zeros(256, np.int32)
    for pattern in range(256):
        bits = [(pattern >> i) & 1 for i in range(8)]
        transitions = sum(bits[i] != bits[i - 1] for i in range(8))
        codes[pattern] = sum(bits) if transitions <= 2 else 9
    return codes


_BIT_VALUES = (2.0 ** np.arange(8)).astype(np.float32)  # ring bit i is worth 2^i


@register
class LocalBinaryPatternHistogram(_CellLayer):
    """Per-cell histogram of rotation-invariant uniform local binary patterns (10 bins).

    Each pixel compares its 8 neighbours at distance ``radius`` with itself (neighbour >=
    centre is 1). A uniform pattern (at most 2 transitions round the ring) is coded by its
    number of ones (0..8); every other pattern is code 9. Output: code frequencies per cell.
    """

    bins = 10

    def __init__(self, radius: int = 1, cell_size: int = 16, **kwargs: Any) -> None:
        super().__init__(cell_size=cell_size, **kwargs)
        if int(radius) < 1:
            raise ValueError(f"radius must be >= 1, got {radius}")
        self.radius = int(radius)

    def call(self, inputs):
        self._check(inputs)
        grey = ops.round(_grey(ops.cast(inputs, "float32")) * 255.0)
        # Neighbour minus centre, exact: grey levels are whole numbers here.
        differences = _offset_differences(grey, [(n, (0, 0)) for n in _ring(self.radius)])
        bits = ops.cast(differences >= 0, "float32")
        # The 8 bits as one number 0..255 (a matrix product: exact in float32).
        pattern = ops.matmul(bits, ops.convert_to_tensor(_BIT_VALUES))
        code = ops.take(ops.convert_to_tensor(_uniform_codes()), ops.cast(pattern, "int32"))
        weight = ops.ones(ops.shape(code), dtype="float32")
        return _cell_histogram(code, weight, self.bins, self.cell_size) * self.gain

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self._out_hw(input_shape), self.bins)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "radius": self.radius}


_YCBCR = np.array(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]],
    np.float32,
)


@register
class CellStatistics(_CellLayer):
    """Per cell: Y/Cb/Cr mean minus the image mean, and the mean absolute Laplacian residual
    of each channel (local noise level), all on a [0, 1] scale. 6 channels.

    Pasted regions differ from their host in colour and in noise/sharpness; these maps show
    where.
    """

    def call(self, inputs):
        self._check(inputs)
        x = ops.cast(inputs, "float32") / 255.0
        ycc = ops.einsum("bhwc,dc->bhwd", x, ops.convert_to_tensor(_YCBCR))
        mean = _cell_mean(ycc, self.cell_size)
        centred = mean - ops.mean(mean, axis=(1, 2), keepdims=True)
        laplacian = np.array([[0, -1, 0], [-1, 4, -1], [0, -1, 0]], np.float32)
        kernel = np.repeat(laplacian[:, :, None, None], 3, axis=2)  # one per channel
        padded = ops.pad(ycc, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="symmetric")
        laplace = ops.depthwise_conv(padded, ops.convert_to_tensor(kernel), padding="valid")
        noise = _cell_mean(ops.abs(laplace), self.cell_size)
        return ops.concatenate([centred, noise], axis=-1) * self.gain

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self._out_hw(input_shape), 6)


@register
class RadialBasisKernel(keras.layers.Layer):
    """Gaussian-kernel similarities of standardised feature vectors to stored prototypes.

    ``exp(-gamma * ||z - p||^2)`` for each of ``n_prototypes`` prototypes p, where z is the
    input standardised with stored means and scales and gamma is 1 / features (scikit-learn's
    ``gamma="scale"`` for standardised features). A Dense unit on top is a kernel machine (an
    RBF SVM's decision function has exactly that form); trained with log-loss it is kernel
    logistic regression. Means, scales and prototypes are not trained by gradient descent:
    ``adapt(features)`` sets them from training examples before fitting, and they are saved
    with the model.
    """

    def __init__(self, n_prototypes: int = 1024, seed: int = 0, **kwargs: Any) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if int(n_prototypes) < 1:
            raise ValueError(f"n_prototypes must be >= 1, got {n_prototypes}")
        self.n_prototypes = int(n_prototypes)
        self.seed = int(seed)

    def build(self, input_shape) -> None:
        features = input_shape[-1]
        if features is None:
            raise ValueError("RadialBasisKernel needs a known feature dimension")
        self.gamma = 1.0 / float(features)
        self.mean = self.add_weight(
            name="mean", shape=(features,), initializer="zeros", trainable=False
        )
        self.scale = self.add_weight(
            name="scale", shape=(features,), initializer="ones", trainable=False
        )
        self.prototypes = self.add_weight(
            name="prototypes",
            shape=(self.n_prototypes, features),
            initializer="zeros",
            trainable=False,
        )

    def adapt(self, features: np.ndarray) -> None:
        """Set means and scales from ``features`` (N, F) and pick prototypes among them.

        With more examples than prototypes, a seeded random subset; with fewer, every example
        and then repeats (a repeated prototype only doubles a column the Dense unit can weigh).
        """
        features = np.asarray(features, np.float32)
        if features.ndim != 2 or len(features) == 0:
            raise ValueError(f"adapt needs a non-empty (N, F) array, got shape {features.shape}")
        if not self.built:
            self.build(features.shape)
        mean = features.mean(axis=0)
        scale = features.std(axis=0)
        scale = np.where(scale > 1e-6, scale, 1.0).astype(np.float32)
        rng = np.random.default_rng(self.seed)
        n = len(features)
        if n >= self.n_prototypes:
            chosen = np.sort(rng.choice(n, self.n_prototypes, replace=False))
        else:
            chosen = np.resize(np.arange(n), self.n_prototypes)
        self.mean.assign(mean)
        self.scale.assign(scale)
        self.prototypes.assign((features[chosen] - mean) / scale)

    def call(self, inputs):
        z = (ops.cast(inputs, "float32") - self.mean) / self.scale
        p = ops.convert_to_tensor(self.prototypes)
        squared = (
            ops.sum(z * z, axis=-1, keepdims=True)
            - 2.0 * ops.matmul(z, ops.transpose(p))
            + ops.sum(p * p, axis=-1)[None, :]
        )
        return ops.exp(-self.gamma * ops.relu(squared))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.n_prototypes)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "n_prototypes": self.n_prototypes, "seed": self.seed}


def kernel_layers(model: keras.Model) -> list[RadialBasisKernel]:
    """The RadialBasisKernel layers of ``model`` (they need ``adapt_kernels`` before fitting)."""
    return [layer for layer in model.layers if isinstance(layer, RadialBasisKernel)]


def adapt_kernels(model: keras.Model, images: np.ndarray, batch_size: int = 64) -> int:
    """Adapt every RadialBasisKernel of ``model`` to the features ``images`` produce.

    ``images`` are the training images the model will be fitted on (uint8, model input).
    Features come from the model's own layers in inference mode (no augmentation). Returns
    the number of kernel layers adapted (0 for models without one).
    """
    kernels = kernel_layers(model)
    for layer in kernels:
        extractor = keras.Model(model.inputs, layer.input)
        layer.adapt(extractor.predict(images, batch_size=batch_size, verbose=0))
    return len(kernels)


def kernel_heads(model: keras.Model) -> list[tuple[RadialBasisKernel, keras.layers.Dense]]:
    """(kernel, the Dense unit reading its similarities) for every kernel of `model`."""
    pairs = []
    for kernel in kernel_layers(model):
        readers = [
            layer
            for layer in model.layers
            if isinstance(layer, keras.layers.Dense) and layer.input is kernel.output
        ]
        if len(readers) != 1 or readers[0].units != 1:
            raise ValueError(f"kernel {kernel.name!r} is not read by exactly one Dense(1) unit")
        pairs.append((kernel, readers[0]))
    return pairs


def fit_kernel_heads(
    model: keras.Model,
    images: np.ndarray,
    labels: np.ndarray,
    val_images: np.ndarray,
    val_labels: np.ndarray,
    batch_size: int = 64,
    strengths: tuple[float, ...] = (1.0, 10.0, 100.0),
) -> dict[str, list[float]]:
    """Solve the kernel heads as one L2 logistic regression (L-BFGS) instead of by SGD.

    For a model whose logit is the sum of Dense(1) units on its kernels' similarities (one
    kernel: `texture_kernel`, `part_seams`; two: `part_texture`), that sum is a linear model
    of the concatenated similarities: the exact optimum of the convex problem, found in
    seconds and the same every run. The inverse strength C is chosen among `strengths` by
    validation AUC (the validation split, never the evaluation one). Returns a one-step
    history (loss, auc, val_loss, val_auc at the chosen C) for the training job's logs.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss

    from fakeface.metrics import roc_auc

    pairs = kernel_heads(model)
    if not pairs:
        raise ValueError(f"model {model.name!r} has no kernel head to solve")
    extractor = keras.Model(model.inputs, [kernel.output for kernel, _ in pairs])

    def similarities(x: np.ndarray) -> np.ndarray:
        out = extractor.predict(x, batch_size=batch_size, verbose=0)
        return np.concatenate(out if isinstance(out, list) else [out], axis=1)

    train_x, val_x = similarities(images), similarities(val_images)
    y, val_y = np.asarray(labels).astype(int), np.asarray(val_labels).astype(int)
    best = None
    for c in strengths:
        fitted = LogisticRegression(C=c, max_iter=5000).fit(train_x, y)
        val_auc = roc_auc(val_y, fitted.decision_function(val_x))
        if best is None or val_auc > best[0] + 1e-9:
            best = (val_auc, c, fitted)
    assert best is not None
    val_auc, _, fitted = best
    coef, start = fitted.coef_[0].astype(np.float32), 0
    for k, (kernel, dense) in enumerate(pairs):
        width = kernel.n_prototypes
        bias = float(fitted.intercept_[0]) if k == 0 else 0.0
        dense.set_weights([coef[start : start + width, None], np.array([bias], np.float32)])
        start += width
    # The model's own output must now be the regression's: else its logit is not the sum
    # of the heads (another branch adds to it) and the solution does not apply.
    check = np.asarray(model.predict(val_images[:8], batch_size=batch_size, verbose=0)).ravel()
    expected = fitted.predict_proba(val_x[:8])[:, 1]
    if not np.allclose(check, expected, atol=2e-3):  # float32 similarities vs float64 fit
        raise ValueError(f"model {model.name!r}: its logit is not the sum of its kernel heads")
    p, val_p = fitted.predict_proba(train_x)[:, 1], fitted.predict_proba(val_x)[:, 1]
    return {
        "loss": [float(log_loss(y, p, labels=[0, 1]))],
        "auc": [roc_auc(y, p)],
        "val_loss": [float(log_loss(val_y, val_p, labels=[0, 1]))],
        "val_auc": [float(val_auc)],
    }
