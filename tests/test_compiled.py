"""Compiled per-pixel loops: made once per process, with or without a writable cache."""

from __future__ import annotations

import numpy as np


def _double_sum(values):  # compiled below
    total = 0.0
    for v in values:
        total += 2.0 * v
    return total


def _triple_sum(values):  # compiled below, without a cache
    total = 0.0
    for v in values:
        total += 3.0 * v
    return total


def test_a_kernel_is_compiled_once_per_process() -> None:
    from fakeface.compiled import compiled

    kernel = compiled(_double_sum)
    assert compiled(_double_sum) is kernel
    assert kernel(np.arange(4.0)) == 12.0


def test_no_writable_cache_still_compiles(monkeypatch) -> None:
    """numba refuses cache=True where no cache folder can be written ("no locator
    available"): the kernel is then compiled for this process only."""
    import numba

    from fakeface.compiled import compiled

    real_njit = numba.njit
    calls = []

    def njit(*args, **kwargs):
        calls.append(kwargs.get("cache", False))
        if kwargs.get("cache"):
            raise RuntimeError("cannot cache function '_triple_sum': no locator available")
        return real_njit(*args, **kwargs)

    monkeypatch.setattr(numba, "njit", njit)
    assert compiled(_triple_sum)(np.arange(3.0)) == 9.0
    assert calls == [True, False]
