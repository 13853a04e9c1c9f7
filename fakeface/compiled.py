"""Per-pixel loops compiled by numba, once per process: the part features' window pass,
the mesh model's affine crop and the detector thumbnail's 2x reduction. Each is compiled
on first use (not at import), cached on disk where the package or the user's cache is
writable."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable
from typing import Any

_COMPILED: dict[Callable, Any] = {}
_LOCK = threading.Lock()


def compiled(func: Callable) -> Any:
    """numba's `njit(nogil=True)` of a module-level function, made once per process."""
    kernel = _COMPILED.get(func)
    if kernel is not None:
        return kernel
    with _LOCK:
        if func not in _COMPILED:
            from numba import njit

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # numba's deprecation chatter on import
                try:
                    _COMPILED[func] = njit(cache=True, nogil=True)(func)
                except RuntimeError:  # "no locator available": nowhere to write a cache
                    _COMPILED[func] = njit(nogil=True)(func)
        return _COMPILED[func]
