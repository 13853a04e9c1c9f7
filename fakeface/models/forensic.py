"""Small residual CNN trained from scratch for photoshopped-face detection ("forensic" variant).

Takes uint8 (or float, [0, 255]) images of any size; resizing and rescaling happen inside the
model. Optional fixed high-pass residual channels. For training with region-flag supervision,
``build_forensic(aux_outputs=3)`` adds a second sigmoid head (eyes, nose, mouth replaced);
``inference_model`` strips it so the scored model has exactly one float32 sigmoid output.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import layers, ops

from fakeface.models.factory import residual_features

register = keras.saving.register_keras_serializable(package="fakeface")

_HP_KERNELS = np.array(
    [
        [[0, -1, 0], [-1, 4, -1], [0, -1, 0]],
        [[0, 0, 0], [-1, 2, -1], [0, 0, 0]],
        [[0, -1, 0], [0, 2, 0], [0, -1, 0]],
    ],
    np.float32,
)


@register
class HighPassResiduals(keras.layers.Layer):
    """Append fixed 2nd-derivative residuals (Laplacian, horizontal, vertical) of the grey image."""

    def __init__(self, gain: float = 4.0, **kwargs: Any) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.gain = float(gain)

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        grey = ops.mean(x, axis=-1, keepdims=True)
        kernel = ops.convert_to_tensor(_HP_KERNELS.transpose(1, 2, 0)[:, :, None, :])
        res = ops.conv(grey, kernel, strides=1, padding="same")
        return ops.concatenate([x, self.gain * res], axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], input_shape[-1] + 3)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "gain": self.gain}


def build_forensic(
    seed: int = 0,
    input_size: int = 64,
    width: int = 16,
    high_pass: bool = False,
    dropout: float = 0.3,
    aux_outputs: int = 0,
    **_: Any,
) -> keras.Model:
    """Residual CNN: uint8 HxWx3 (any size) -> one sigmoid (fake probability), float32."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((None, None, 3), name="image")
    x = layers.Resizing(input_size, input_size, name="resize", dtype="float32")(inp)
    x = layers.Rescaling(1 / 127.5, offset=-1.0, name="rescale")(x)
    if high_pass:
        x = HighPassResiduals(name="high_pass")(x)
    x = residual_features(x, width=width, dropout=dropout)
    out = layers.Dense(1, activation="sigmoid", dtype="float32", name="score")(x)
    if aux_outputs:
        aux = layers.Dense(aux_outputs, activation="sigmoid", dtype="float32", name="regions")(x)
        return keras.Model(inp, [out, aux], name="forensic_aux")
    return keras.Model(inp, out, name="forensic")


def inference_model(model: keras.Model) -> keras.Model:
    """The single-output scoring model (drops the region head of a training model)."""
    if len(model.outputs) == 1:
        return model
    return keras.Model(model.inputs, model.outputs[0], name="forensic")
