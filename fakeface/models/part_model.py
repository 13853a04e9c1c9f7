"""The part recipe as one `keras.Model`: pixels -> mesh + part features -> four heads -> scores.

Output: (N, 6) float32 in `fakeface.outputs.MODEL_OUTPUTS` order: the noisy-OR P(fake), each
part's P(pasted), and 1.0 / 0.0 for face found. The mesh and the features run inside the
graph (`tf.numpy_function`), once per image, so the nightly job, the served model and the
training job's checks all score through the same model. No cache: every image is measured.
"""

from __future__ import annotations

import threading
from typing import Any

import keras
import numpy as np
from keras import layers

from fakeface.models.part_features import N_PART_FEATURES, part_features
from fakeface.models.part_heads import PartHeads
from fakeface.models.texture import RadialBasisKernel
from fakeface.outputs import PART_NAMES

register = keras.saving.register_keras_serializable(package="fakeface")
PART_SIZE = 600  # the side features are measured at: the data set's native resolution

_MESHER: Any = None
# TFLite's set_tensor / invoke / get_tensor on one interpreter are not reentrant: calls from
# several threads (per-replica predict, a threaded server) take turns on the one mesher.
_MESHER_LOCK = threading.Lock()


def _mesher() -> Any:
    global _MESHER
    with _MESHER_LOCK:
        if _MESHER is None:  # one per process: the TFLite models load once per worker
            from fakeface.landmarks import FaceMesher

            _MESHER = FaceMesher()
    return _MESHER


def mesh_of(rgb: np.ndarray) -> np.ndarray | None:
    """The process's mesher on one uint8 image, one thread at a time."""
    mesher = _mesher()
    with _MESHER_LOCK:
        return mesher.mesh_array(rgb)


def image_part_features(rgb: np.ndarray, size: int = PART_SIZE) -> np.ndarray:
    """(parts, F) features of one uint8 image, measured at `size` px (resized if need be)."""
    rgb = np.asarray(rgb, np.uint8)
    if rgb.shape[:2] != (size, size):
        from PIL import Image

        rgb = np.asarray(
            Image.fromarray(rgb).resize((size, size), Image.Resampling.BILINEAR), np.uint8
        )
    return part_features(rgb, mesh_of(rgb))


def batch_part_features(images: np.ndarray, size: int = PART_SIZE) -> np.ndarray:
    """(N, parts, F) float32 for uint8 images (N, H, W, 3); NaN rows where no face."""
    images = np.asarray(images)
    out = np.empty((len(images), len(PART_NAMES), N_PART_FEATURES), np.float32)
    for i, image in enumerate(images):
        out[i] = image_part_features(image, size)
    return out


@register
class FacePartFeatures(keras.layers.Layer):
    """uint8 RGB (N, H, W, 3) -> (features (N, parts, F), face found (N, 1)).

    Where no face is found the features are `fill` (the training rows' mean, saved with the
    model), so P(fake) is still given: the heads' verdict on an average face.
    """

    def __init__(self, size: int = PART_SIZE, **kwargs: Any) -> None:
        kwargs.setdefault("dtype", "float32")
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        self.size = int(size)

    def build(self, input_shape) -> None:
        self.fill = self.add_weight(
            name="fill",
            shape=(len(PART_NAMES), N_PART_FEATURES),
            initializer="zeros",
            trainable=False,
        )

    def call(self, inputs):
        import tensorflow as tf

        features = tf.numpy_function(
            lambda x: batch_part_features(x, self.size),
            [tf.cast(inputs, tf.uint8)],
            tf.float32,
            stateful=False,
        )
        features = tf.ensure_shape(features, [None, len(PART_NAMES), N_PART_FEATURES])
        finite = tf.math.is_finite(features)
        found = tf.reduce_all(tf.reshape(finite, [tf.shape(features)[0], -1]), axis=1)
        fill = tf.broadcast_to(tf.convert_to_tensor(self.fill)[None], tf.shape(features))
        filled = tf.where(finite, features, fill)
        return filled, tf.cast(found, tf.float32)[:, None]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], len(PART_NAMES), N_PART_FEATURES), (input_shape[0], 1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "size": self.size}


@register
class PartSlice(keras.layers.Layer):
    """(N, parts, F) -> (N, F): one part's row (a saved layer, unlike a Lambda)."""

    def __init__(self, index: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.index = int(index)

    def call(self, inputs):
        return inputs[:, self.index, :]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "index": self.index}


@register
class NoisyOr(keras.layers.Layer):
    """(N, parts) probabilities -> (N, 1) P(any part) = 1 - prod(1 - p)."""

    def call(self, inputs):
        from keras import ops

        return 1.0 - ops.prod(1.0 - inputs, axis=-1, keepdims=True)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 1)


def part_heads_outputs(pixels, n_prototypes: int = 1024):
    """The part recipe on the raw uint8 input tensor -> the (N, 6) scores tensor."""
    features, found = FacePartFeatures(name="part_features")(pixels)
    parts = []
    for k, name in enumerate(PART_NAMES):
        x = PartSlice(k, name=f"{name}_features")(features)
        sims = RadialBasisKernel(n_prototypes=n_prototypes, name=f"{name}_kernel")(x)
        logit = layers.Dense(1, dtype="float32", name=f"{name}_logit")(sims)
        parts.append(layers.Activation("sigmoid", dtype="float32", name=f"p_{name}")(logit))
    parts_tensor = layers.Concatenate(name="parts")(parts)
    p_fake = NoisyOr(name="p_fake", dtype="float32")(parts_tensor)
    return layers.Concatenate(name="scores", dtype="float32")([p_fake, parts_tensor, found])


def assign_part_heads(model: keras.Model, heads: PartHeads) -> None:
    """Load fitted `heads` (numpy) into the model's layers."""
    model.get_layer("part_features").fill.assign(heads.fill.astype(np.float32))
    for name in PART_NAMES:
        head = heads.heads[name]
        kernel = model.get_layer(f"{name}_kernel")
        if head.prototypes.shape != tuple(kernel.prototypes.shape):
            raise ValueError(
                f"{name}: {head.prototypes.shape} prototypes for a kernel of"
                f" {tuple(kernel.prototypes.shape)}"
            )
        kernel.mean.assign(head.mean.astype(np.float32))
        kernel.scale.assign(head.scale.astype(np.float32))
        kernel.prototypes.assign(head.prototypes.astype(np.float32))
        model.get_layer(f"{name}_logit").set_weights(
            [head.coef.astype(np.float32)[:, None], np.array([head.bias], np.float32)]
        )


def is_part_model(model: keras.Model) -> bool:
    """True for a model built by `part_heads_outputs`."""
    return any(isinstance(layer, FacePartFeatures) for layer in model.layers)
