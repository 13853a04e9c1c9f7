"""The training memory estimate and the one-line refusal of a batch that would not fit."""

from __future__ import annotations

import keras
import pytest

from fakeface.errors import ConfigError
from fakeface.models.memory import (
    BASELINE_BYTES,
    GIB,
    activation_bytes_per_image,
    check_training_memory,
    training_bytes,
)
from tests.test_user_errors import one_error_line, run


def tiny_model() -> keras.Model:
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Resizing(8, 8)(inputs)  # 8*8*3
    x = keras.layers.Conv2D(4, 3, padding="same")(x)  # 8*8*4
    x = keras.layers.Flatten()(x)  # 256
    outputs = keras.layers.Dense(2)(x)  # 2
    return keras.Model(inputs, outputs)


def test_activation_bytes_count_every_fixed_output_once() -> None:
    # The open-sized input is not counted: its size is the caller's, not the model's.
    assert activation_bytes_per_image(tiny_model()) == 4 * (192 + 256 + 256 + 2)


def test_check_refuses_with_the_batch_size_that_fits() -> None:
    model = tiny_model()
    per_image = activation_bytes_per_image(model) * 1.2
    available = BASELINE_BYTES + model.count_params() * 16 + int(per_image * 10.5)
    check_training_memory("tiny", model, 10, available)  # fits: no error
    check_training_memory("tiny", model, 10**9, None)  # memory unknown: no check
    with pytest.raises(
        ConfigError, match=r"batch_size=11 needs about .*: --set train.batch_size=10 fits"
    ):
        check_training_memory("tiny", model, 11, available)
    with pytest.raises(ConfigError, match="no batch size fits"):
        check_training_memory("tiny", model, 1, BASELINE_BYTES // 2)


@pytest.mark.slow
def test_efficientnetb4_default_batch_does_not_fit_24_gib() -> None:
    """The calibration points: killed at 22.7 GiB RSS at batch 32, about 10 GiB at batch 8."""
    from fakeface.models.factory import build_model

    model = build_model("efficientnetb4", weights="none")
    assert training_bytes(model, 32) > 24 * GIB
    assert 7 * GIB < training_bytes(model, 8) < 12 * GIB


@pytest.mark.slow
def test_train_job_refuses_a_batch_that_cannot_fit_before_reading_data(tmp_path) -> None:
    line = one_error_line(
        run(
            "train",
            ["--data", str(tmp_path), "--variant", "custom", "--set", "train.batch_size=1000000"],
            {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'm.db'}", "TF_CPP_MIN_LOG_LEVEL": "3"},
        )
    )
    assert "training custom at train.batch_size=1000000 needs about" in line
    assert "GiB are available" in line
