"""Shared by the micro-benchmarks: the mean milliseconds of a call, after one warm-up call."""

from __future__ import annotations

import time
from typing import Callable


def mean_ms(fn: Callable[[], object], repeat: int) -> float:
    """Mean wall milliseconds of ``fn()`` over ``repeat`` calls, after one untimed warm-up."""
    fn()
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t0) / repeat * 1000
