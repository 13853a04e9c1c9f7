"""Will a variant's training fit in this machine's memory? Answered before anything runs.

EfficientNetB4 at 380 px keeps about 0.7 GB of float32 layer outputs per image for the
backward pass: at the default batch of 32 the kernel killed the job at 22.7 GiB RSS on a
24 GiB machine, with no word. The estimate below is calibrated on that and on batch 8
(about 10 GiB RSS): per-image layer outputs x batch x 1.2 (gradients of the activations
in flight), 16 bytes per parameter (weights, gradients, two Adam moments), plus 2 GiB for
TensorFlow, Spark's Python side and the validation arrays. Two later runs with the defaults
peaked at 19.2 GiB RSS at batch 20 (estimate 18.4) and 19.3 GiB at batch 22 (estimate 20.0):
within 5% either way, so only HEADROOM of the available memory is planned for.

Training runs at the largest batch size up to the configured one that the estimate says
fits in HEADROOM x the available memory; only a variant that would not fit even at batch 1
is refused.
"""

from __future__ import annotations

import math
import os
from typing import Any

from fakeface.errors import ConfigError

GIB = 2**30
ACTIVATION_FACTOR = 1.2
BYTES_PER_PARAM = 16
BASELINE_BYTES = 2 * GIB
HEADROOM = 0.9  # the estimate's error (5% either way), plus what other processes take meanwhile


def activation_bytes_per_image(model: Any) -> int:
    """float32 bytes of every fixed-shape layer output for one image (nested models too)."""
    total = 0
    for layer in model.layers:
        if getattr(layer, "layers", None):
            total += activation_bytes_per_image(layer)
            continue
        outputs = layer.output if isinstance(layer.output, list | tuple) else [layer.output]
        for out in outputs:
            dims = list(out.shape[1:])
            if dims and None not in dims:  # before the in-model resize the size is open
                total += 4 * math.prod(int(d) for d in dims)
    return total


def training_bytes(model: Any, batch_size: int) -> int:
    """Estimated peak resident memory of training `model` at `batch_size` on a CPU."""
    return int(
        activation_bytes_per_image(model) * batch_size * ACTIVATION_FACTOR
        + model.count_params() * BYTES_PER_PARAM
        + BASELINE_BYTES
    )


def available_bytes() -> int | None:
    """MemAvailable (Linux), else physical memory; None when neither can be read."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def fitting_batch_size(model: Any, requested: int, available: int | None) -> int:
    """The largest batch size <= `requested` whose training fits `available` bytes.

    `requested` when memory is unknown (None) or it fits; 0 when not even batch 1 fits.
    """
    if available is None or training_bytes(model, requested) <= available:
        return requested
    per_image = activation_bytes_per_image(model) * ACTIVATION_FACTOR
    fixed = model.count_params() * BYTES_PER_PARAM + BASELINE_BYTES
    if available < fixed:
        return 0
    batch = min(requested, int((available - fixed) // per_image))
    # The closed form can be one off at the edge (float rounding): settle it exactly.
    while batch >= 1 and training_bytes(model, batch) > available:
        batch -= 1
    while batch < requested and training_bytes(model, batch + 1) <= available:
        batch += 1
    return max(batch, 0)


def check_training_memory(variant: str, model: Any, batch_size: int, available: int | None) -> int:
    """The batch size to train `variant` at (its estimate within HEADROOM x `available`);
    refuse in one line when not even batch 1 fits."""
    usable = None if available is None else int(available * HEADROOM)
    batch = fitting_batch_size(model, batch_size, usable)
    if batch >= 1 or available is None:
        return batch
    raise ConfigError(
        f"training {variant} needs about {training_bytes(model, 1) / GIB:.1f} GiB even at"
        f" train.batch_size=1, and {available / GIB:.1f} GiB are available ({HEADROOM:.0%} of"
        " it planned for): train it on a larger machine or a GPU"
    )
