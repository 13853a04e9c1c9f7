"""Model variants, custom layers and augmentations (submodules import keras lazily)."""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "build_model": "fakeface.models.factory",
    "input_size": "fakeface.models.factory",
    "list_variants": "fakeface.models.factory",
    "set_base_trainable": "fakeface.models.factory",
    "VARIANTS": "fakeface.models.factory",
    "AUGMENTATIONS": "fakeface.models.augment",
    "DEFAULT_AUGMENTATION_PROBS": "fakeface.models.augment",
    "build_augmenter": "fakeface.models.augment",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import the public names on first use, so `import fakeface.models` stays free of keras."""
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
