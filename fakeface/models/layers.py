"""Serializable custom Keras layers: casting, preprocessing and the study's augmentations.

Everything here is built from ``keras.ops`` / ``keras.random`` only (no ``Lambda``, no ``tf.*``),
so the layers run on the TensorFlow, JAX and PyTorch backends and a saved model reloads anywhere
``fakeface`` is importable (``import fakeface`` registers this module when keras is imported).

Augmentation layers work on float images in [0, 255] (NHWC, or a single HWC image). They are
active only when called with ``training=True``; each image in a batch is augmented with the
layer's own ``probability``, random parameters are drawn per image from a ``SeedGenerator``.
They keep shape and dtype (computing in float32 internally) and clip the result to [0, 255].
Layers that need spatial pooling/resizing (JpegCompression's padding is dynamic-safe; the CLAHE
pair and BlendAlphaSimplexNoise) need static height/width, which the models give them because
augmentation always follows ``keras.layers.Resizing``.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
from keras import ops

PACKAGE = "fakeface"
register = keras.saving.register_keras_serializable(package=PACKAGE)

# name -> augmentation layer class, filled by @_augmentation below (augment.py re-exports it)
AUGMENTATION_LAYERS: dict[str, type[RandomImageAugmentation]] = {}


def _augmentation(cls: type) -> type:
    """Register ``cls`` for Keras serialization and in AUGMENTATION_LAYERS under its name."""
    cls = register(cls)
    AUGMENTATION_LAYERS[cls.__name__] = cls
    return cls


def _pair(value: float | tuple[float, float] | list[float], name: str) -> tuple[float, float]:
    """Normalise a scalar or (low, high) parameter into a float pair (scalar -> fixed value)."""
    if isinstance(value, int | float):
        return float(value), float(value)
    low, high = (float(v) for v in value)
    if low > high:
        raise ValueError(f"{name}: low {low} > high {high}")
    return low, high


# ---------------------------------------------------------------------------------------------
# plain (non-random) layers used by the model stems
# ---------------------------------------------------------------------------------------------


@register
class CastToFloat32(keras.layers.Layer):
    """Cast any input (e.g. uint8 images) to float32 without rescaling."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(autocast=False, **kwargs)

    def call(self, inputs):
        return ops.cast(inputs, "float32")

    def compute_output_shape(self, input_shape):
        return input_shape


@register
class CaffePreprocess(keras.layers.Layer):
    """VGG ('caffe') preprocessing: RGB [0,255] -> BGR minus the ImageNet BGR channel means."""

    BGR_MEAN = (103.939, 116.779, 123.68)

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)

    def call(self, inputs):
        x = ops.flip(ops.cast(inputs, "float32"), axis=-1)
        return x - ops.convert_to_tensor(np.array(self.BGR_MEAN, dtype="float32"))

    def compute_output_shape(self, input_shape):
        return input_shape


# ---------------------------------------------------------------------------------------------
# augmentation base class and helpers
# ---------------------------------------------------------------------------------------------


def _static_hw(x) -> tuple[int, int]:
    """Static (height, width) of an NHWC tensor; raise if unknown (needed for pool/resize)."""
    h, w = x.shape[1], x.shape[2]
    if h is None or w is None:
        raise ValueError("this augmentation needs static image height/width; put it after Resizing")
    return int(h), int(w)


def _shift_stack(x, radius: int) -> list:
    """All (2r+1)^2 shifted copies of x (symmetric border), row-major over (dy, dx)."""
    h, w = ops.shape(x)[1], ops.shape(x)[2]
    p = ops.pad(x, [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode="symmetric")
    size = 2 * radius + 1
    return [p[:, dy : dy + h, dx : dx + w, :] for dy in range(size) for dx in range(size)]


def _conv3x3(x, kernel):
    """Per-image 3x3 correlation with symmetric borders; kernel (3, 3) or (B, 3, 3)."""
    kernel = ops.cast(kernel, "float32")
    shifted = _shift_stack(x, 1)
    if len(kernel.shape) == 2:
        kernel = ops.expand_dims(kernel, 0)
    flat = ops.reshape(kernel, (-1, 9))
    out = 0.0
    for i, s in enumerate(shifted):
        out = out + ops.reshape(flat[:, i], (-1, 1, 1, 1)) * s
    return out


def _luma(x):
    """ITU-R BT.601 luma (JPEG Y) of RGB images, keeping a channel axis."""
    r, g, b = x[..., 0:1], x[..., 1:2], x[..., 2:3]
    return 0.299 * r + 0.587 * g + 0.114 * b


def _resize(x, height, width):
    return ops.image.resize(x, (height, width), interpolation="bilinear")


class RandomImageAugmentation(keras.layers.Layer):
    """Base class: per-image Bernoulli(``probability``) application of ``augment`` in training.

    Subclasses implement ``augment(x)`` on float32 NHWC [0, 255] images and draw random values
    with ``self.uniform`` / ``self.normal`` (both use this layer's SeedGenerator).
    """

    def __init__(self, probability: float = 1.0, seed: int | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(autocast=False, **kwargs)
        if not 0.0 <= float(probability) <= 1.0:
            raise ValueError(f"{type(self).__name__}: probability {probability} not in [0, 1]")
        self.probability = float(probability)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = True

    # random helpers --------------------------------------------------------------------------
    def uniform(self, shape, low: float = 0.0, high: float = 1.0):
        """Uniform samples in [low, high) from this layer's seed generator."""
        return keras.random.uniform(
            shape, minval=low, maxval=high, dtype="float32", seed=self.seed_generator
        )

    def normal(self, shape):
        """Standard normal samples from this layer's seed generator."""
        return keras.random.normal(shape, dtype="float32", seed=self.seed_generator)

    def per_image(self, x, low_high: tuple[float, float]):
        """One uniform value per image, shaped (B, 1, 1, 1) to broadcast over NHWC."""
        return self.uniform((ops.shape(x)[0], 1, 1, 1), *low_high)

    # the layer -------------------------------------------------------------------------------
    def build(self, input_shape) -> None:
        self.built = True  # no weights; the seed generator's state is created in __init__

    def augment(self, x):
        raise NotImplementedError

    def call(self, inputs, training=None):
        if not training or self.probability <= 0.0:
            return inputs
        unbatched = len(inputs.shape) == 3
        x = ops.cast(inputs, "float32")
        if unbatched:
            x = ops.expand_dims(x, 0)
        out = self.augment(x)
        if self.probability < 1.0:
            apply = self.uniform((ops.shape(x)[0], 1, 1, 1)) < self.probability
            out = ops.where(apply, out, x)
        out = ops.clip(out, 0.0, 255.0)
        if unbatched:
            out = ops.squeeze(out, 0)
        if "int" in str(inputs.dtype):
            out = ops.round(out)
        return ops.cast(out, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(probability=self.probability, seed=self.seed)
        return config


# ---------------------------------------------------------------------------------------------
# the study's augmentations (imgaug names; parameter defaults follow imgaug where sensible)
# ---------------------------------------------------------------------------------------------


@_augmentation
class AdditiveGaussianNoise(RandomImageAugmentation):
    """Add N(0, sigma^2) noise, sigma ~ U(scale) per image; one noise field for all channels."""

    per_channel_default = False

    def __init__(
        self,
        scale: tuple[float, float] = (0.0, 0.05 * 255),
        per_channel: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.scale = _pair(scale, "scale")
        self.per_channel = self.per_channel_default if per_channel is None else bool(per_channel)

    def augment(self, x):
        b, h, w = ops.shape(x)[0], ops.shape(x)[1], ops.shape(x)[2]
        sigma = self.per_image(x, self.scale)
        noise = self.normal((b, h, w, 3 if self.per_channel else 1))
        return x + sigma * noise

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "scale": list(self.scale), "per_channel": self.per_channel}


@_augmentation
class AdditiveGaussianNoisePerChannel(AdditiveGaussianNoise):
    """AdditiveGaussianNoise with an independent noise field per channel (colour noise)."""

    per_channel_default = True


@_augmentation
class Invert(RandomImageAugmentation):
    """Invert the image: 255 - x."""

    def augment(self, x):
        return 255.0 - x


@_augmentation
class Solarize(RandomImageAugmentation):
    """Invert the pixels at or above a threshold ~ U(threshold) per image."""

    def __init__(self, threshold: tuple[float, float] = (64.0, 192.0), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.threshold = _pair(threshold, "threshold")

    def augment(self, x):
        t = self.per_image(x, self.threshold)
        return ops.where(x >= t, 255.0 - x, x)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "threshold": list(self.threshold)}


_JPEG_LUMA = np.array(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ],
    dtype="float32",
)
_JPEG_CHROMA = np.full((8, 8), 99.0, dtype="float32")
_JPEG_CHROMA[:4, :4] = [[17, 18, 24, 47], [18, 21, 26, 66], [24, 26, 56, 99], [47, 66, 99, 99]]
_RGB_TO_YCBCR = np.array(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]],
    dtype="float32",
)
_YCBCR_TO_RGB = np.linalg.inv(_RGB_TO_YCBCR).astype("float32")


def _dct_matrix(n: int = 8) -> np.ndarray:
    """Orthonormal DCT-II basis D (rows = frequencies), so coefficients = D @ X @ D.T."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    d = np.cos((2 * i + 1) * k * np.pi / (2 * n)) * np.sqrt(2.0 / n)
    d[0, :] = np.sqrt(1.0 / n)
    return d.astype("float32")


@_augmentation
class JpegCompression(RandomImageAugmentation):
    """Approximate JPEG at quality ~ U(quality) per image, entirely in keras.ops.

    Steps: RGB -> YCbCr (JPEG full range, level-shifted by -128); 4:2:0 chroma subsampling
    approximated by 2x2 block averaging of Cb/Cr (nearest upsampling back); pad (symmetric) to a
    multiple of 8; 8x8 block DCT-II by matrix multiply with the DCT basis; quantisation with
    the standard IJG luminance/chrominance tables scaled for the quality (libjpeg formula);
    inverse DCT, crop, YCbCr -> RGB. Not modelled: entropy coding (lossless anyway), chroma
    downsampled-domain DCT, and uint8 rounding between stages.
    """

    def __init__(self, quality: tuple[float, float] = (10.0, 60.0), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.quality = _pair(quality, "quality")
        if not 1.0 <= self.quality[0] <= self.quality[1] <= 100.0:
            raise ValueError(f"JpegCompression: quality {self.quality} not within [1, 100]")

    def augment(self, x):
        b, h, w = ops.shape(x)[0], ops.shape(x)[1], ops.shape(x)[2]
        ycc = ops.matmul(x, ops.convert_to_tensor(_RGB_TO_YCBCR.T))
        ycc = ycc - ops.convert_to_tensor(np.array([128.0, 0.0, 0.0], dtype="float32"))
        # pad to a multiple of 16 (8x8 blocks of 2x2-subsampled chroma), symmetric border
        ph, pw = (-h) % 16, (-w) % 16
        ycc = ops.pad(ycc, [[0, 0], [0, ph], [0, pw], [0, 0]], mode="symmetric")
        hp, wp = h + ph, w + pw
        y, cbcr = ycc[..., :1], ycc[..., 1:]
        cbcr = ops.average_pool(cbcr, pool_size=2, strides=2, padding="valid")
        cbcr = ops.repeat(ops.repeat(cbcr, 2, axis=1), 2, axis=2)
        ycc = ops.concatenate([y, cbcr], axis=-1)

        blocks = ops.reshape(ycc, (b, hp // 8, 8, wp // 8, 8, 3))
        d = ops.convert_to_tensor(_dct_matrix())
        coef = ops.einsum("um,bimjnc->biujnc", d, blocks)
        coef = ops.einsum("vn,biujnc->biujvc", d, coef)

        q = self.uniform((b,), *self.quality)
        scale = ops.where(q < 50.0, 5000.0 / q, 200.0 - 2.0 * q)
        scale = ops.reshape(scale, (-1, 1, 1, 1, 1, 1))
        base = np.stack([_JPEG_LUMA, _JPEG_CHROMA, _JPEG_CHROMA], axis=-1).reshape(1, 1, 8, 1, 8, 3)
        table = ops.clip(ops.floor((ops.convert_to_tensor(base) * scale + 50.0) / 100.0), 1, 255)
        coef = ops.round(coef / table) * table

        blocks = ops.einsum("um,biujvc->bimjvc", d, coef)
        blocks = ops.einsum("vn,bimjvc->bimjnc", d, blocks)
        ycc = ops.reshape(blocks, (b, hp, wp, 3))[:, :h, :w, :]
        ycc = ycc + ops.convert_to_tensor(np.array([128.0, 0.0, 0.0], dtype="float32"))
        return ops.matmul(ycc, ops.convert_to_tensor(_YCBCR_TO_RGB.T))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "quality": list(self.quality)}


@_augmentation
class BlendAlphaSimplexNoise(RandomImageAugmentation):
    """Alpha-blend a foreground effect into the image through a smooth random mask.

    The mask approximates imgaug's simplex noise: uniform noise at a few low resolutions
    (``octaves`` grid sizes) bilinearly upsampled, weighted 1, 1/2, 1/4 ..., min-max normalised
    per image and sharpened with a sigmoid (random steepness and threshold per image).
    ``foreground`` is "edge_detect" (Laplacian edges, imgaug's usual companion) or "invert".
    """

    FOREGROUNDS = ("edge_detect", "invert")

    def __init__(
        self,
        octaves: tuple[int, ...] = (2, 4, 8),
        foreground: str = "edge_detect",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if foreground not in self.FOREGROUNDS:
            raise ValueError(
                f"BlendAlphaSimplexNoise: foreground must be one of {self.FOREGROUNDS}"
            )
        self.octaves = tuple(int(o) for o in octaves)
        self.foreground = foreground

    def _mask(self, x):
        h, w = _static_hw(x)
        b = ops.shape(x)[0]
        noise = 0.0
        for i, size in enumerate(self.octaves):
            low = self.uniform((b, size, size, 1))
            noise = noise + _resize(low, h, w) * (0.5**i)
        lo = ops.min(noise, axis=(1, 2, 3), keepdims=True)
        hi = ops.max(noise, axis=(1, 2, 3), keepdims=True)
        noise = (noise - lo) / (hi - lo + 1e-6)
        steep = self.per_image(x, (5.0, 20.0))
        threshold = self.per_image(x, (0.3, 0.7))
        return ops.sigmoid(steep * (noise - threshold))

    def augment(self, x):
        if self.foreground == "invert":
            fg = 255.0 - x
        else:
            fg = _conv3x3(x, np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype="float32"))
        alpha = self._mask(x)
        return alpha * fg + (1.0 - alpha) * x

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "octaves": list(self.octaves),
            "foreground": self.foreground,
        }


@_augmentation
class MeanShiftBlur(RandomImageAugmentation):
    """Edge-preserving blur approximating OpenCV/imgaug mean-shift filtering.

    One (or ``iterations``) step(s) of a range-weighted mean over a (2r+1)^2 box window: each
    neighbour is weighted by exp(-||c_n - c||^2 / (2 sigma^2)) with the colour radius
    sigma ~ U(color_radius) per image, so flat regions are smoothed while strong edges survive.
    """

    def __init__(
        self,
        spatial_radius: int = 2,
        color_radius: tuple[float, float] = (10.0, 40.0),
        iterations: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.spatial_radius = int(spatial_radius)
        self.color_radius = _pair(color_radius, "color_radius")
        self.iterations = int(iterations)

    def augment(self, x):
        sigma = self.per_image(x, self.color_radius)
        inv = 1.0 / (2.0 * sigma * sigma)
        for _ in range(self.iterations):
            num, den = 0.0, 0.0
            for n in _shift_stack(x, self.spatial_radius):
                wgt = ops.exp(-ops.sum(ops.square(n - x), axis=-1, keepdims=True) * inv)
                num = num + wgt * n
                den = den + wgt
            x = num / den
        return x

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "spatial_radius": self.spatial_radius,
            "color_radius": list(self.color_radius),
            "iterations": self.iterations,
        }


def _translate(x, dy, dx, fill: float):
    """Shift images by integer (dy, dx) per image (B,), filling uncovered pixels with ``fill``."""
    h, w = ops.shape(x)[1], ops.shape(x)[2]
    rows = ops.expand_dims(ops.arange(h, dtype="int32"), 0) - ops.expand_dims(dy, 1)
    cols = ops.expand_dims(ops.arange(w, dtype="int32"), 0) - ops.expand_dims(dx, 1)
    row_ok = ops.logical_and(rows >= 0, rows < h)
    col_ok = ops.logical_and(cols >= 0, cols < w)
    x = ops.take_along_axis(x, ops.clip(rows, 0, h - 1)[:, :, None, None], axis=1)
    x = ops.take_along_axis(x, ops.clip(cols, 0, w - 1)[:, None, :, None], axis=2)
    ok = ops.logical_and(row_ok[:, :, None, None], col_ok[:, None, :, None])
    return ops.where(ok, x, fill)


@_augmentation
class RandAugment(RandomImageAugmentation):
    """RandAugment-style: ``num_ops`` rounds, each applying one op chosen uniformly per image.

    Ops: brightness (scale by 1 +- 0.9m), contrast (scale around the image's mean grey by
    1 +- 0.9m), translate (up to 0.3m of the size in x and y, grey 128 fill) and posterize
    (keep 7 - floor(3m) bits), with magnitude m ~ U(magnitude) per image and round.
    """

    OPS = ("brightness", "contrast", "translate", "posterize")

    def __init__(
        self, num_ops: int = 2, magnitude: tuple[float, float] = (0.1, 0.9), **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.num_ops = int(num_ops)
        self.magnitude = _pair(magnitude, "magnitude")
        if not 0.0 <= self.magnitude[0] <= self.magnitude[1] <= 1.0:
            raise ValueError(f"RandAugment: magnitude {self.magnitude} not within [0, 1]")

    def _sign(self, x):
        return ops.where(self.per_image(x, (0.0, 1.0)) < 0.5, -1.0, 1.0)

    def _one_round(self, x):
        b = ops.shape(x)[0]
        h, w = ops.shape(x)[1], ops.shape(x)[2]
        m = self.per_image(x, self.magnitude)
        brightness = x * (1.0 + self._sign(x) * 0.9 * m)
        grey = ops.mean(_luma(x), axis=(1, 2, 3), keepdims=True)
        contrast = grey + (x - grey) * (1.0 + self._sign(x) * 0.9 * m)
        max_shift = 0.3 * ops.reshape(m, (-1,))
        dy = ops.cast(ops.round(self.uniform((b,), -1.0, 1.0) * max_shift * h), "int32")
        dx = ops.cast(ops.round(self.uniform((b,), -1.0, 1.0) * max_shift * w), "int32")
        translate = _translate(x, dy, dx, 128.0)
        step = ops.power(2.0, 1.0 + ops.floor(3.0 * m))  # drop 1..3 low bits
        posterize = ops.floor(ops.clip(x, 0.0, 255.0) / step) * step
        choice = ops.cast(ops.floor(self.uniform((b,), 0.0, len(self.OPS))), "int32")
        onehot = ops.one_hot(ops.minimum(choice, len(self.OPS) - 1), len(self.OPS))
        out = 0.0
        for i, candidate in enumerate((brightness, contrast, translate, posterize)):
            out = out + ops.reshape(onehot[:, i], (-1, 1, 1, 1)) * candidate
        return ops.clip(out, 0.0, 255.0)

    def augment(self, x):
        for _ in range(self.num_ops):
            x = self._one_round(x)
        return x

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "num_ops": self.num_ops, "magnitude": list(self.magnitude)}


@_augmentation
class AddToHueAndSaturation(RandomImageAugmentation):
    """Rotate hue by U(hue) degrees and add U(saturation) (in 0..255 units) to saturation."""

    def __init__(
        self,
        hue: tuple[float, float] = (-30.0, 30.0),
        saturation: tuple[float, float] = (-30.0, 30.0),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.hue = _pair(hue, "hue")
        self.saturation = _pair(saturation, "saturation")

    def augment(self, x):
        hsv = ops.image.rgb_to_hsv(ops.clip(x, 0.0, 255.0) / 255.0, data_format="channels_last")
        dh = self.per_image(x, self.hue) / 360.0
        ds = self.per_image(x, self.saturation) / 255.0
        hue = ops.mod(hsv[..., 0:1] + dh, 1.0)
        sat = ops.clip(hsv[..., 1:2] + ds, 0.0, 1.0)
        hsv = ops.concatenate([hue, sat, hsv[..., 2:3]], axis=-1)
        return ops.image.hsv_to_rgb(hsv, data_format="channels_last") * 255.0

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "hue": list(self.hue), "saturation": list(self.saturation)}


@_augmentation
class SigmoidContrast(RandomImageAugmentation):
    """imgaug sigmoid contrast: 255 / (1 + exp(gain * (cutoff - x / 255))), per-image params."""

    def __init__(
        self,
        gain: tuple[float, float] = (5.0, 6.0),
        cutoff: tuple[float, float] = (0.3, 0.6),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.gain = _pair(gain, "gain")
        self.cutoff = _pair(cutoff, "cutoff")

    def augment(self, x):
        gain = self.per_image(x, self.gain)
        cutoff = self.per_image(x, self.cutoff)
        return 255.0 * ops.sigmoid(gain * (x / 255.0 - cutoff))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "gain": list(self.gain), "cutoff": list(self.cutoff)}


class _LocalContrastEqualization(RandomImageAugmentation):
    """Histogram-free CLAHE approximation shared by CLAHE and AllChannelsCLAHE.

    Per tile of a ``tiles`` x ``tiles`` grid we take the mean and standard deviation
    (average pooling), bilinearly interpolate them to every pixel (as CLAHE interpolates tile
    mappings), then stretch around the local mean: v -> mean + gain * (v - mean) with
    gain = clip(73.6 / std, 1, c) and clip limit c ~ U(clip_limit) per image. 73.6 is the std of
    a flat (fully equalised) histogram and c bounds the slope like CLAHE's clip limit; as with
    CLAHE, flat tiles stay (nearly) unchanged and low-contrast tiles are stretched the most.
    """

    def __init__(
        self, clip_limit: tuple[float, float] = (1.5, 4.0), tiles: int = 8, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.clip_limit = _pair(clip_limit, "clip_limit")
        if self.clip_limit[0] < 1.0:
            raise ValueError(f"{type(self).__name__}: clip_limit must be >= 1")
        self.tiles = int(tiles)

    def _equalize(self, v, clip):
        h, w = _static_hw(v)
        pool = (max(1, math.ceil(h / self.tiles)), max(1, math.ceil(w / self.tiles)))
        mean = ops.average_pool(v, pool, strides=pool, padding="same")
        mean_sq = ops.average_pool(v * v, pool, strides=pool, padding="same")
        std = ops.sqrt(ops.maximum(mean_sq - mean * mean, 0.0))
        mean, std = _resize(mean, h, w), _resize(std, h, w)
        gain = ops.clip(255.0 / math.sqrt(12.0) / (std + 1e-3), 1.0, clip)
        return mean + gain * (v - mean)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "clip_limit": list(self.clip_limit), "tiles": self.tiles}


@_augmentation
class AllChannelsCLAHE(_LocalContrastEqualization):
    """CLAHE approximation applied to R, G and B independently (see _LocalContrastEqualization)."""

    def augment(self, x):
        return self._equalize(x, self.per_image(x, self.clip_limit))


@_augmentation
class CLAHE(_LocalContrastEqualization):
    """CLAHE approximation on luma only; the luma change is added to R, G, B (keeps Cb/Cr)."""

    def augment(self, x):
        y = _luma(x)
        return x + (self._equalize(y, self.per_image(x, self.clip_limit)) - y)


@_augmentation
class Sharpen(RandomImageAugmentation):
    """imgaug Sharpen: blend (alpha) with kernel [[-1,-1,-1],[-1,8+L,-1],[-1,-1,-1]]."""

    def __init__(
        self,
        alpha: tuple[float, float] = (0.0, 1.0),
        lightness: tuple[float, float] = (0.75, 1.5),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.alpha = _pair(alpha, "alpha")
        self.lightness = _pair(lightness, "lightness")

    def augment(self, x):
        alpha = self.per_image(x, self.alpha)
        lightness = self.per_image(x, self.lightness)
        high_pass = _conv3x3(x, np.array([[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]], "float32"))
        return (1.0 - alpha) * x + alpha * (lightness * x + high_pass)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "alpha": list(self.alpha),
            "lightness": list(self.lightness),
        }


@_augmentation
class Emboss(RandomImageAugmentation):
    """imgaug Emboss: blend (alpha) with kernel [[-1-s,-s,0],[-s,1,s],[0,s,1+s]]."""

    def __init__(
        self,
        alpha: tuple[float, float] = (0.0, 1.0),
        strength: tuple[float, float] = (0.0, 2.0),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.alpha = _pair(alpha, "alpha")
        self.strength = _pair(strength, "strength")

    def augment(self, x):
        alpha = self.per_image(x, self.alpha)
        strength = self.per_image(x, self.strength)
        base = _conv3x3(x, np.array([[-1, 0, 0], [0, 1, 0], [0, 0, 1]], "float32"))
        slope = _conv3x3(x, np.array([[-1, -1, 0], [-1, 0, 1], [0, 1, 1]], "float32"))
        return (1.0 - alpha) * x + alpha * (base + strength * slope)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "alpha": list(self.alpha), "strength": list(self.strength)}


@_augmentation
class EdgeDetect(RandomImageAugmentation):
    """imgaug EdgeDetect: blend (alpha) with the Laplacian kernel [[0,1,0],[1,-4,1],[0,1,0]]."""

    alpha_default = (0.0, 0.5)

    def __init__(self, alpha: tuple[float, float] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.alpha = _pair(self.alpha_default if alpha is None else alpha, "alpha")

    def augment(self, x):
        alpha = self.per_image(x, self.alpha)
        edges = _conv3x3(x, np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], "float32"))
        return (1.0 - alpha) * x + alpha * edges

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "alpha": list(self.alpha)}


@_augmentation
class EdgeDetectStrong(EdgeDetect):
    """EdgeDetect with a strong blend, alpha ~ U(0.5, 1.0) (edges dominate the image)."""

    alpha_default = (0.5, 1.0)


# unit vectors of the 3x3 neighbourhood cells (x right, y down), row-major; centre is masked out
_CELLS = np.array([(x, y) for y in (-1, 0, 1) for x in (-1, 0, 1)], dtype="float32")
_CENTRE = np.array([[0.0] * 4 + [1.0] + [0.0] * 4], dtype="float32")
_CELL_UNITS = _CELLS / np.maximum(np.linalg.norm(_CELLS, axis=1, keepdims=True), 1e-6)


@_augmentation
class DirectedEdgeDetect(RandomImageAugmentation):
    """imgaug DirectedEdgeDetect: edges in a direction ~ U(direction) (fraction of 360 deg).

    Kernel as in imgaug: neighbour weights (1 - angle/180deg)^4 to the direction vector,
    normalised to sum 1 and negated, centre 1; blended with the image by alpha.
    """

    def __init__(
        self,
        alpha: tuple[float, float] = (0.0, 0.75),
        direction: tuple[float, float] = (0.0, 1.0),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.alpha = _pair(alpha, "alpha")
        self.direction = _pair(direction, "direction")

    def _kernels(self, b):
        deg = ops.mod(ops.floor(self.uniform((b,), *self.direction) * 360.0), 360.0)
        rad = deg * (math.pi / 180.0) - 0.5 * math.pi
        vec = ops.stack([ops.cos(rad), ops.sin(rad)], axis=-1)  # (B, 2)
        cos = ops.clip(ops.matmul(vec, ops.convert_to_tensor(_CELL_UNITS.T)), -1.0, 1.0)
        similarity = ops.power(1.0 - ops.arccos(cos) / math.pi, 4.0)  # (B, 9)
        centre = ops.convert_to_tensor(_CENTRE)
        similarity = similarity * (1.0 - centre)
        weights = -similarity / ops.sum(similarity, axis=-1, keepdims=True)
        return ops.reshape(weights + centre, (-1, 3, 3))

    def augment(self, x):
        alpha = self.per_image(x, self.alpha)
        edges = _conv3x3(x, self._kernels(ops.shape(x)[0]))
        return (1.0 - alpha) * x + alpha * edges

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "alpha": list(self.alpha),
            "direction": list(self.direction),
        }


# ---------------------------------------------------------------------------------------------
# the pipeline
# ---------------------------------------------------------------------------------------------


def _snake(name: str) -> str:
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i and (not name[i - 1].isupper() or name[i + 1 : i + 2].islower()):
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


@register
class AugmentationPipeline(keras.layers.Layer):
    """Apply each augmentation in ``probs`` ({name: probability}) in the dict's order.

    Each listed augmentation is applied to each image independently with its probability, and
    only when ``training=True``. Sub-layers are rebuilt from ``probs`` and ``seed`` on load.
    """

    def __init__(
        self, probs: dict[str, float] | None = None, seed: int | None = None, **kwargs: Any
    ) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(autocast=False, **kwargs)
        probs = dict(probs or {})
        unknown = [name for name in probs if name not in AUGMENTATION_LAYERS]
        if unknown:
            raise ValueError(
                f"unknown augmentation {unknown[0]!r}; choose from {sorted(AUGMENTATION_LAYERS)}"
            )
        self.probs = {name: float(p) for name, p in probs.items()}
        self.seed = seed
        self.augmenters = [
            AUGMENTATION_LAYERS[name](
                probability=p,
                seed=None if seed is None else int(seed) + i,
                name=_snake(name),
            )
            for i, (name, p) in enumerate(self.probs.items())
            if p > 0.0
        ]

    def build(self, input_shape) -> None:
        for layer in self.augmenters:
            layer.build(input_shape)
        self.built = True

    def call(self, inputs, training=None):
        x = inputs
        if not training:
            return x
        for layer in self.augmenters:
            x = layer(x, training=training)
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "probs": dict(self.probs), "seed": self.seed}


# The texture descriptors and the kernel layer live in their own module; importing it here
# registers them too, so models using them reload after `import fakeface` like the rest.
from fakeface.models import part_model as _part_model  # noqa: E402, F401
from fakeface.models import parts as _parts  # noqa: E402, F401
from fakeface.models import texture as _texture  # noqa: E402, F401
