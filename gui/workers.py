"""Run core callables off the UI thread and turn their progress into Qt signals.

A :class:`Task` wraps a callable that accepts ``progress=`` and ``cancel=`` keyword arguments
(every long function in :mod:`core` does). The callable runs on a :class:`QThreadPool` thread; its
progress callback only emits a queued signal, so nothing Qt is touched off the main thread.
The public signals (``progress``, ``finished``, ``failed``, ``cancelled``, ``ended``) are always
emitted on the main thread.

Two lanes keep the CPU sane on small machines: ``heavy`` (loading, pruning runs, sweeps, export,
saliency) and ``light`` (magnitude previews, evaluation, saving and restoring runs); each runs one task at a time.
"""

from __future__ import annotations

import time
import traceback
import warnings
from typing import Any, Callable

from PySide6.QtCore import QObject, QRunnable, Qt, QThreadPool, QTimer, Signal, Slot

from core.errors import Cancelled
from core.progress import CancelToken, EtaEstimator, Progress

#: Minimum seconds between two progress signals of the same stage (the UI needs ~20 Hz at most).
PROGRESS_INTERVAL = 0.05


class _Bridge(QObject):
    """Signals emitted from the worker thread; queued onto the owning Task on the main thread."""

    progress = Signal(object)
    partial = Signal(object)
    done = Signal(object)
    error = Signal(object, str)
    stopped = Signal()


class _Runnable(QRunnable):
    """Runs a task's callable. Holds no reference to the Task itself, only to its bridge, which
    the Task owns on the C++ side; so the Task is always destroyed on the main thread."""

    def __init__(self, task: "Task") -> None:
        super().__init__()
        self.setAutoDelete(True)
        self._fn = task.fn
        self._args = task.args
        self._kwargs = dict(task.kwargs)
        self._pass_progress = task.pass_progress
        self._pass_partial = task.pass_partial
        self._token = task.token
        self._bridge = task._bridge

    def run(self) -> None:  # worker thread: no Qt calls other than signal emission
        bridge, token = self._bridge, self._token
        last = [0.0, None]

        def on_progress(p: Progress) -> None:
            now = time.monotonic()
            if p.stage != last[1] or p.fraction >= 1.0 or now - last[0] >= PROGRESS_INTERVAL:
                last[0], last[1] = now, p.stage
                bridge.progress.emit(p)

        try:
            token.raise_if_cancelled()
            kwargs = self._kwargs
            if self._pass_progress:
                kwargs["progress"] = on_progress
                kwargs["cancel"] = token
            if self._pass_partial:  # every partial result: the view draws each as it comes
                kwargs["on_partial"] = bridge.partial.emit
            result = self._fn(*self._args, **kwargs)
        except Cancelled:
            bridge.stopped.emit()
        except BaseException as exc:  # noqa: BLE001 - every failure becomes a signal
            bridge.error.emit(exc, traceback.format_exc())
        else:
            if token.cancelled:
                bridge.stopped.emit()  # cancelled after the last check: drop the result
            else:
                bridge.done.emit(result)
        finally:
            self._fn = self._args = self._kwargs = None
            self._bridge = None


class Task(QObject):
    """One background job over a core callable.

    Signals: ``progress(stage, fraction, eta_seconds, message)`` (``eta_seconds`` is ``None``
    while unknown), ``finished(result)``, ``failed(exception)``, ``cancelled()``, and
    ``ended()`` after any of the three. With ``cancellable=False`` the job always runs to its end
    (:meth:`TaskRunner.shutdown` waits for it). With ``pass_partial`` the callable also gets
    ``on_partial=``, and each object it passes there arrives as ``partial(obj)`` (results so far,
    e.g. a sweep's finished points; still delivered when the job is then cancelled).
    """

    progress = Signal(str, float, object, str)
    partial = Signal(object)
    finished = Signal(object)
    failed = Signal(object)
    cancelled = Signal()
    ended = Signal()

    def __init__(
        self,
        fn: Callable[..., Any],
        *args: Any,
        title: str = "",
        lane: str = "heavy",
        foreground: bool = True,
        pass_progress: bool = True,
        pass_partial: bool = False,
        cancellable: bool = True,
        parent: QObject | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(parent)
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.title = title or getattr(fn, "__name__", "task")
        self.lane = lane
        self.foreground = foreground
        self.pass_progress = pass_progress
        self.pass_partial = pass_partial
        self.cancellable = cancellable  # False: cancel() and shutdown() let it run to its end
        self.token = CancelToken()
        self.state = "new"  # new → running → finished | failed | cancelled
        self.result: Any = None
        self.error: BaseException | None = None
        self.traceback = ""
        self.started_at = 0.0
        self.seconds = 0.0
        self._eta = EtaEstimator()
        self._bridge = _Bridge(self)  # owned by the Task on the C++ side
        queued = Qt.ConnectionType.QueuedConnection
        self._bridge.progress.connect(self._on_progress, queued)
        self._bridge.partial.connect(self._on_partial, queued)
        self._bridge.done.connect(self._on_done, queued)
        self._bridge.error.connect(self._on_error, queued)
        self._bridge.stopped.connect(self._on_stopped, queued)

    # -- control (main thread) -------------------------------------------------------------
    def start(self, pool: QThreadPool) -> "Task":
        """Queue the job on ``pool``; returns self."""
        self.state = "running"
        self.started_at = time.monotonic()
        pool.start(_Runnable(self))
        return self

    def cancel(self) -> None:
        """Ask the job to stop at its next check; ``cancelled`` follows. A task made with
        ``cancellable=False`` (saving the user's runs) is never stopped: it runs to its end."""
        if self.cancellable:
            self.token.cancel()

    @property
    def running(self) -> bool:
        """True between :meth:`start` and the end signal."""
        return self.state == "running"

    # -- bridge slots (main thread) --------------------------------------------------------
    @Slot(object)
    def _on_progress(self, p: Progress) -> None:
        if self.state != "running" or self.token.cancelled:
            return
        eta = self._eta.update(p)
        # fraction −1 marks work of unknown length (the view shows a busy bar, no ETA)
        self.progress.emit(p.stage, -1.0 if p.indeterminate else p.fraction, eta, p.message)

    @Slot(object)
    def _on_partial(self, result: Any) -> None:
        if self.state == "running":  # queued before the end signal, so never after it
            self.partial.emit(result)

    @Slot(object)
    def _on_done(self, result: Any) -> None:
        self._finish("finished")
        self.result = result
        self.finished.emit(result)
        self.ended.emit()

    @Slot(object, str)
    def _on_error(self, exc: BaseException, tb: str) -> None:
        self._finish("failed")
        self.error = exc
        self.traceback = tb
        self.failed.emit(exc)
        self.ended.emit()

    @Slot()
    def _on_stopped(self) -> None:
        self._finish("cancelled")
        self.cancelled.emit()
        self.ended.emit()

    def _retire(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # signals without receivers
            for signal in (self.progress, self.partial, self.finished, self.failed, self.cancelled,
                           self.ended):
                try:
                    signal.disconnect()
                except (RuntimeError, TypeError):
                    pass

    def _finish(self, state: str) -> None:
        self.state = state
        self.seconds = time.monotonic() - self.started_at


class TaskRunner(QObject):
    """Owns the worker lanes and keeps running tasks alive until they end."""

    task_started = Signal(object)
    task_ended = Signal(object)

    LANES = ("heavy", "light")

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.pools: dict[str, QThreadPool] = {}
        for lane in self.LANES:
            pool = QThreadPool(self)
            pool.setMaxThreadCount(1)
            self.pools[lane] = pool
        self.tasks: list[Task] = []

    def submit(self, task: Task) -> Task:
        """Start ``task`` on its lane and keep it alive until it ends."""
        self.tasks.append(task)
        task.ended.connect(lambda t=task: self._ended(t))
        task.start(self.pools[task.lane])
        self.task_started.emit(task)
        return task

    def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Task:
        """Build a :class:`Task` from ``fn`` and its arguments, submit it and return it."""
        return self.submit(Task(fn, *args, **kwargs))

    def _ended(self, task: Task) -> None:
        if task in self.tasks:
            self.tasks.remove(task)
        self.task_ended.emit(task)
        # Drop the connections (and the reference cycles through their lambdas) once this signal
        # has returned, so the Task is freed by reference counting on the main thread.
        QTimer.singleShot(0, task._retire)

    def running(self, *, foreground: bool | None = None) -> list[Task]:
        """Tasks still running, optionally only foreground or background ones."""
        return [t for t in self.tasks if t.running and (foreground is None or t.foreground == foreground)]

    def cancel_all(self) -> None:
        """Ask every running task to stop."""
        for task in list(self.tasks):
            task.cancel()

    def shutdown(self, timeout_ms: int = 60000) -> bool:
        """Cancel everything (but tasks made with ``cancellable=False``, which run to their end) and
        wait for the threads; True if they all stopped in time."""
        self.cancel_all()
        ok = True
        for pool in self.pools.values():
            ok = pool.waitForDone(timeout_ms) and ok
        return ok
