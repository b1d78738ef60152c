"""Cost: wall time of a step and its speed-up over the gold retrain (DESIGN.md "Cost")."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from types import TracebackType

from obliviate.metrics._common import METRICS, MetricError


class Timer:
    """Wall-clock timer (``time.perf_counter``) used as a context manager.

    >>> with Timer() as t:
    ...     pass
    >>> t.seconds >= 0
    True

    ``seconds`` is the elapsed time so far while running, and the final time after the block
    (also when it raised).
    """

    def __init__(self) -> None:
        self._start: float | None = None
        self._stop: float | None = None

    def __enter__(self) -> Timer:
        self._start, self._stop = time.perf_counter(), None
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop = time.perf_counter()

    @property
    def seconds(self) -> float:
        if self._start is None:
            raise MetricError("Timer was never started; use it as `with Timer() as t:`")
        end = self._stop if self._stop is not None else time.perf_counter()
        return end - self._start


def timer() -> Timer:
    """A fresh :class:`Timer` (``with timer() as t: ...; t.seconds``)."""
    return Timer()


def median_time(fn: Callable[[], object], repeats: int = 3) -> float:
    """Median wall time in seconds of ``repeats`` calls of ``fn()`` (for benchmarks, not tests)."""
    if repeats < 1:
        raise MetricError(f"repeats must be >= 1, got {repeats}")
    times = []
    for _ in range(repeats):
        with Timer() as t:
            fn()
        times.append(t.seconds)
    return statistics.median(times)


@METRICS.register(
    "speedup",
    higher_is_better=True,
    unit="×",
    description="gold retrain time / step time (how many times faster than retraining)",
    reference="DESIGN.md 'Cost'",
)
def speedup(step_seconds: float, gold_seconds: float) -> float:
    """``gold_seconds / step_seconds``; raises on a non-positive or non-finite time."""
    for name, v in (("step_seconds", step_seconds), ("gold_seconds", gold_seconds)):
        if not math.isfinite(v) or v <= 0:
            raise MetricError(f"{name} must be a positive finite time, got {v!r}")
    return gold_seconds / step_seconds
