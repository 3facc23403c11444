"""Progress reporting and cooperative cancellation for long work (no Qt here).

Long functions take ``progress: ProgressFn | None`` and ``cancel: CancelToken | None``.
They call ``report(progress, stage, done, total)`` now and then and
``check(cancel)`` between chunks of work; ``check`` raises :class:`core.errors.Cancelled`.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable

from core.errors import Cancelled


@dataclass(frozen=True)
class Progress:
    """One progress report: ``done`` of ``total`` units of the named ``stage``."""

    stage: str
    done: float
    total: float
    message: str = ""

    @property
    def indeterminate(self) -> bool:
        """True for work of unknown length (``total <= 0``): show activity, not a fraction."""
        return self.total <= 0

    @property
    def fraction(self) -> float:
        """Fraction of the stage done, in [0, 1]."""
        if self.total <= 0:
            return 0.0
        return max(0.0, min(1.0, self.done / self.total))


ProgressFn = Callable[[Progress], None]


class CancelToken:
    """A thread-safe flag that a front end sets and long work polls."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        """Ask the work to stop at its next check."""
        self._event.set()

    @property
    def cancelled(self) -> bool:
        """True once :meth:`cancel` has been called."""
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        """Raise :class:`Cancelled` if cancellation was requested."""
        if self._event.is_set():
            raise Cancelled("cancelled by the user")


def check(cancel: CancelToken | None) -> None:
    """Raise :class:`Cancelled` if ``cancel`` is set; no-op for ``None``."""
    if cancel is not None:
        cancel.raise_if_cancelled()


def report(progress: ProgressFn | None, stage: str, done: float, total: float, message: str = "") -> None:
    """Send a :class:`Progress` to ``progress`` if one was given."""
    if progress is not None:
        progress(Progress(stage, float(done), float(total), message))


class EtaEstimator:
    """Estimate the remaining seconds of a stage from the rate observed so far."""

    def __init__(self) -> None:
        self._stage: str | None = None
        self._start = 0.0

    def update(self, p: Progress, now: float | None = None) -> float | None:
        """Feed a report; return the estimated seconds left, or None if unknown yet."""
        now = time.monotonic() if now is None else now
        if p.indeterminate:
            self._stage = p.stage
            return None
        if p.stage != self._stage:
            self._stage = p.stage
            self._start = now
            return None
        elapsed = now - self._start
        f = p.fraction
        if f <= 0.02 or elapsed < 0.3:
            return None
        return elapsed * (1.0 - f) / f
