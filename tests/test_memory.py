"""The training memory estimate and the one-line refusal of a batch that would not fit."""

from __future__ import annotations

import re

import keras
import pytest

from fakeface.errors import ConfigError
from fakeface.models.memory import (
    BASELINE_BYTES,
    GIB,
    HEADROOM,
    activation_bytes_per_image,
    check_training_memory,
    fitting_batch_size,
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


def test_the_batch_shrinks_to_the_largest_that_fits() -> None:
    model = tiny_model()
    per_image = activation_bytes_per_image(model) * 1.2
    usable = BASELINE_BYTES + model.count_params() * 16 + int(per_image * 10.5)
    available = int(usable / HEADROOM) + 1  # the check plans for HEADROOM of what is free
    assert check_training_memory("tiny", model, 10, available) == 10  # fits as asked
    assert check_training_memory("tiny", model, 11, available) == 10
    assert check_training_memory("tiny", model, 10**6, available) == 10
    assert check_training_memory("tiny", model, 10**9, None) == 10**9  # memory unknown
    assert fitting_batch_size(model, 3, usable) == 3
    assert fitting_batch_size(model, 11, usable) == 10
    for batch in (1, 7, 10):
        assert training_bytes(model, batch) <= usable < training_bytes(model, 11)


def test_only_a_model_that_does_not_fit_at_batch_1_is_refused() -> None:
    model = tiny_model()
    assert fitting_batch_size(model, 8, BASELINE_BYTES // 2) == 0
    with pytest.raises(ConfigError, match=r"tiny needs about .* even at train\.batch_size=1"):
        check_training_memory("tiny", model, 8, BASELINE_BYTES // 2)


@pytest.mark.slow
def test_efficientnetb4_default_batch_does_not_fit_24_gib() -> None:
    """The calibration points: killed at 22.7 GiB RSS at batch 32, about 10 GiB at batch 8."""
    from fakeface.models.factory import build_model

    model = build_model("efficientnetb4", weights="none")
    assert training_bytes(model, 32) > 24 * GIB
    assert 7 * GIB < training_bytes(model, 8) < 12 * GIB
    batch = fitting_batch_size(model, 32, 22 * GIB)  # what this 24 GiB machine has free
    assert 8 <= batch < 32
    assert training_bytes(model, batch) <= 22 * GIB < training_bytes(model, batch + 1)


@pytest.mark.slow
def test_train_job_shrinks_a_batch_that_cannot_fit_and_goes_on(tmp_path) -> None:
    """No refusal up front: the job says which batch it trains at, then reads the data."""
    data = tmp_path / "data"
    data.mkdir()
    result = run(
        "train",
        ["--data", str(data), "--variant", "custom", "--set", "train.batch_size=1000000"],
        {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'm.db'}", "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    shrunk = re.search(r"custom: train\.batch_size=1000000 needs about .* training at batch (\d+)",
                       result.stderr)  # fmt: skip
    assert shrunk, result.stderr[-3000:]
    assert 1 <= int(shrunk.group(1)) < 1000000
    line = one_error_line(result)  # the empty --data folder, found after the memory check
    assert "run jobs/ingest.py first" in line and "GiB" not in line
