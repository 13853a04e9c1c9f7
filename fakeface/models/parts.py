"""Statistics of the face's parts at native resolution, placed by a face mesh, as a Keras layer.

A fake of the CIPLAB data set is a real face with an eye, the nose or the mouth pasted in
from another photo. Whatever the editor's skill, the pasted part comes from another camera,
light and skin: its colour, noise and sharpness differ from the face around it, and its
blending boundary lies near the part's outline. `part_statistics` measures, for each part
the mesh places (left eye, right eye, nose, mouth):

- the part's mean luma / Cb / Cr, luma spread and high-pass energy, against the face's own
  skin (cheeks, forehead, chin) and, for the eyes, against each other;
- in five concentric elliptical rings around the part (0-0.7, 0.7-1, 1-1.3, 1.3-1.7 and
  1.7-2.2 of its half extent): high-pass energy, its median absolute deviation (noise),
  gradient magnitude and chroma, each relative to the outermost ring.

They hold up on a platform re-encode (research/accuracy/mesh_probe.py: AUC 0.697 on original
bytes, 0.686 re-encoded, pose-balanced 0.669 / 0.654, against 0.648 / 0.591 for HOG + LBP).

The mesh is MediaPipe's 468-point face mesh (`fakeface.landmarks.FaceMesher`, TFLite). The
layer runs it through `tf.numpy_function`: the scored model stays one `keras.Model`, and the
mesh step is inside it. Results are memoised by image content (bounded): a kernel machine's
training sees the same images every epoch and the layer has no trainable state.
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import threading
from typing import Any

import keras
import numpy as np

from fakeface.mesh_points import PARTS, SKIN

register = keras.saving.register_keras_serializable(package="fakeface")

RINGS = (0.0, 0.7, 1.0, 1.3, 1.7, 2.2)
REGION_STATS = 5  # luma, Cb, Cr, luma std, log high-pass energy
RING_STATS = 5  # log |high-pass|, log MAD of high-pass, log gradient, Cb, Cr
N_REGION = (len(PARTS) + len(SKIN)) * REGION_STATS + 3 * REGION_STATS
N_RING = len(PARTS) * (len(RINGS) - 1) * RING_STATS
N_FEATURES = N_REGION + N_RING
MESH_SIDE = 320


def _planes(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Luma and the two chroma planes (BT.601, chroma centred on 0)."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = -0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 0.5 * r - 0.418688 * g - 0.081312 * b
    return y, cb, cr


def _high_pass(y: np.ndarray) -> np.ndarray:
    """y minus the mean of its 4 neighbours (edges repeated)."""
    p = np.pad(y, 1, mode="edge")
    return y - 0.25 * (p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:])


def _window(
    points: np.ndarray, grow: float | np.ndarray, shape: tuple[int, int], end_pad: int = 1
) -> tuple[slice, slice]:
    """The pixel window around `points`, grown by `grow` of their half extent, clipped."""
    h, w = shape
    centre = points.mean(axis=0)
    half = (points.max(axis=0) - points.min(axis=0)) / 2 + 1.0
    x0, y0 = np.clip(np.floor(centre - half * grow), 0, [w - 1, h - 1]).astype(int)
    x1, y1 = np.clip(np.ceil(centre + half * grow) + end_pad, 1, [w, h]).astype(int)
    return slice(y0, max(y1, y0 + 2)), slice(x0, max(x1, x0 + 2))


def _region_vector(y, cb, cr, points: np.ndarray, iod: float) -> np.ndarray:
    """Mean luma / Cb / Cr, luma std and log high-pass energy in the points' bounding box."""
    half = (points.max(axis=0) - points.min(axis=0)) / 2 + 1.0
    # the box grown by 5% of the inter-ocular distance on every side
    sl = _window(points, 1.0 + 0.05 * iod / half, y.shape, end_pad=0)
    luma = y[sl]
    return np.array(
        [
            luma.mean(),
            cb[sl].mean(),
            cr[sl].mean(),
            luma.std(),
            np.log1p(np.abs(_high_pass(luma)).mean()),
        ]
    )


def _ring_matrix(y, cb, cr, points: np.ndarray) -> np.ndarray:
    """(rings, RING_STATS) around one part, each ring relative to the outermost one."""
    sl = _window(points, RINGS[-1], y.shape)
    luma = y[sl]
    hp = _high_pass(luma)
    gy, gx = np.gradient(luma) if min(luma.shape) > 1 else (np.zeros_like(luma),) * 2
    grad = np.hypot(gx, gy)
    centre = points.mean(axis=0)
    half = (points.max(axis=0) - points.min(axis=0)) / 2 + 1.0
    yy, xx = np.mgrid[sl[0], sl[1]]
    radius = np.hypot((xx - centre[0]) / half[0], (yy - centre[1]) / half[1])
    stats = np.full((len(RINGS) - 1, RING_STATS), np.nan)
    for k, (lo, hi) in enumerate(itertools.pairwise(RINGS)):
        ring = (radius >= lo) & (radius < hi)
        if ring.sum() < 4:
            continue
        e = hp[ring]
        stats[k] = [
            np.log1p(np.abs(e).mean()),
            np.log1p(np.median(np.abs(e - np.median(e)))),
            np.log1p(grad[ring].mean()),
            cb[sl][ring].mean(),
            cr[sl][ring].mean(),
        ]
    relative = stats - stats[-1]
    relative[-1] = stats[-1]
    return relative


def part_statistics(rgb: np.ndarray, mesh: np.ndarray | None) -> np.ndarray:
    """The N_FEATURES numbers of one float RGB image (H, W, 3) in [0, 255]; NaN if no mesh."""
    if mesh is None or not np.isfinite(mesh).all():
        return np.full(N_FEATURES, np.nan, np.float32)
    y, cb, cr = _planes(np.asarray(rgb, np.float32))
    mesh = np.asarray(mesh, np.float64)
    iod = float(np.hypot(*(mesh[[33, 133]].mean(0) - mesh[[362, 263]].mean(0))))
    regions = {
        name: _region_vector(y, cb, cr, mesh[list(idx)], iod)
        for name, idx in {**PARTS, **SKIN}.items()
    }
    skin = np.mean([regions[name] for name in SKIN], axis=0)
    differences = [
        regions["left_eye"] - regions["right_eye"],
        regions["nose"] - skin,
        regions["mouth"] - regions["chin"],
    ]
    rings = [_ring_matrix(y, cb, cr, mesh[list(idx)]).reshape(-1) for idx in PARTS.values()]
    return np.concatenate([*regions.values(), *differences, *rings]).astype(np.float32)


def mesh_at_most(mesher: Any, image: Any, side: int) -> np.ndarray | None:
    """The mesh of `image` found on a copy at most `side` px, in the image's own pixels.

    The detector reads 128 px and the mesh model a 192 px crop, so a 320 px copy placed the
    points as well (0.5 px mean error at 600 px on the data set). `FaceMesher` now makes its
    own thumbnail and crop, so the copy saves little; it stays because the `part_seams` /
    `part_texture` models were fitted on meshes found this way.
    """
    from PIL import Image

    w, h = image.size
    scale = min(1.0, side / max(w, h))
    if scale < 1.0:
        small = image.resize(
            (max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BILINEAR
        )
        mesh = mesher.mesh(small)
        return None if mesh is None else mesh * np.array([w / small.size[0], h / small.size[1]])
    return mesher.mesh(image)


class _Memo:
    """Bounded, thread-safe memo of (mesh, statistics) by image content digest."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.items: collections.OrderedDict[bytes, np.ndarray] = collections.OrderedDict()
        self.lock = threading.Lock()
        self.mesher: Any = None

    def features(self, image: np.ndarray) -> np.ndarray:
        from PIL import Image

        pixels = np.clip(np.rint(image), 0, 255).astype(np.uint8)
        key = hashlib.blake2b(pixels.tobytes(), digest_size=16).digest()
        key += np.asarray(image.shape, np.int32).tobytes()
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
                return self.items[key]
            if self.mesher is None:
                from fakeface.landmarks import FaceMesher

                self.mesher = FaceMesher()
            mesh = mesh_at_most(self.mesher, Image.fromarray(pixels), MESH_SIDE)
            out = part_statistics(image, mesh)
            self.items[key] = out
            while len(self.items) > self.size:
                self.items.popitem(last=False)
            return out


_MEMO = _Memo(size=8192)


def batch_part_statistics(images: np.ndarray) -> np.ndarray:
    """(N, N_FEATURES) float32 for float RGB images (N, H, W, 3); NaN rows where no face."""
    images = np.asarray(images, np.float32)
    out = np.empty((len(images), N_FEATURES), np.float32)
    for i, image in enumerate(images):
        out[i] = _MEMO.features(image)
    return out


@register
class FacePartStatistics(keras.layers.Layer):
    """Float RGB (batch, H, W, 3) in [0, 255] -> (batch, N_FEATURES) part statistics.

    Where no face is found, the row is the training images' mean (`adapt`), so the image
    is scored as an average face rather than dropped: `fill` is saved with the model.
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("dtype", "float32")
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)

    def build(self, input_shape) -> None:
        self.fill = self.add_weight(
            name="fill", shape=(N_FEATURES,), initializer="zeros", trainable=False
        )

    def adapt(self, features: np.ndarray) -> None:
        """Set `fill` to the mean of the rows of `features` (N, N_FEATURES) with a face."""
        if not self.built:
            self.build((None, None, None, 3))
        features = np.asarray(features, np.float32).reshape(-1, N_FEATURES)
        found = np.isfinite(features).all(axis=1)
        mean = features[found].mean(axis=0) if found.any() else np.zeros(N_FEATURES)
        self.fill.assign(np.nan_to_num(mean).astype(np.float32))

    def call(self, inputs):
        import tensorflow as tf

        features = tf.numpy_function(
            batch_part_statistics, [tf.cast(inputs, tf.float32)], tf.float32, stateful=False
        )
        features = tf.ensure_shape(features, [None, N_FEATURES])
        fill = tf.broadcast_to(tf.convert_to_tensor(self.fill)[None, :], tf.shape(features))
        return tf.where(tf.math.is_finite(features), features, fill)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], N_FEATURES)


def part_layers(model: keras.Model) -> list[FacePartStatistics]:
    """The FacePartStatistics layers of `model` (adapted before the kernels)."""
    return [layer for layer in model.layers if isinstance(layer, FacePartStatistics)]


def adapt_parts(model: keras.Model, images: np.ndarray, batch_size: int = 64) -> int:
    """Adapt every FacePartStatistics layer of `model` to the training `images` (uint8).

    Batch by batch: the layer's input is the resized float image, too big to hold for a
    whole training split at 600 px. Filling the memo here also makes the kernel adaptation
    and the first epoch that follow cheap. Returns the number of layers adapted.
    """
    layers = part_layers(model)
    for layer in layers:
        extractor = keras.Model(model.inputs, layer.input)
        rows = [
            batch_part_statistics(
                np.asarray(extractor.predict_on_batch(images[i : i + batch_size]))
            )
            for i in range(0, len(images), batch_size)
        ]
        layer.adapt(np.concatenate(rows) if rows else np.zeros((0, N_FEATURES), np.float32))
    return len(layers)
