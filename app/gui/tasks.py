"""One-off background jobs on Qt's thread pool (import, export, image loading), with progress and cancel.

Every failure becomes a ``failed`` signal with one readable message (``describe_error``); nothing
propagates into Qt's event loop.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from app.core.errors import DatasetError

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 0.05


class Cancelled(Exception):
    """Raised inside a job's progress callback once the user cancelled it."""


def describe_error(error: BaseException) -> str:
    """One line for the user: our errors' own messages, out-of-memory with advice, others typed."""
    text = str(error) or type(error).__name__
    if isinstance(error, MemoryError) or "out of memory" in text.lower():
        return f"Out of memory: {text.splitlines()[0]}. Try fewer steps, the CPU device, or a smaller image."
    if isinstance(error, (DatasetError, ValueError, FileNotFoundError)) or type(error).__name__ == "WeightsError":
        return text
    return f"{type(error).__name__}: {text}"


class _TaskSignals(QObject):
    progress = Signal("qint64", "qint64")
    done = Signal(object)
    failed = Signal(str)


class Task(QRunnable):
    """A function run on Qt's thread pool: ``fn(progress)`` where ``progress(done, total)`` reports and
    raises ``Cancelled`` once ``cancel()`` was called. Results and errors come back as signals.

    A job may report per item (an export, per instance); the signal goes out at most every
    ``PROGRESS_INTERVAL_S`` (and at the end), so a quarter of a million reports do not flood the window.
    """

    def __init__(self, fn: Callable[[Callable[[int, int], None]], Any], name: str) -> None:
        super().__init__()
        self.setAutoDelete(False)
        self.fn = fn
        self.name = name
        self.signals = _TaskSignals()
        self._cancelled = threading.Event()
        self._reported = 0.0

    def cancel(self) -> None:
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def _progress(self, done: int, total: int) -> None:
        if self._cancelled.is_set():
            raise Cancelled(f"{self.name} cancelled")
        now = time.monotonic()
        if done >= total or now - self._reported >= PROGRESS_INTERVAL_S:
            self._reported = now
            self.signals.progress.emit(done, total)

    def run(self) -> None:
        try:
            result = self.fn(self._progress)
        except Cancelled as error:
            self.signals.failed.emit(str(error))
        except Exception as error:
            log.exception("%s failed", self.name)
            self.signals.failed.emit(describe_error(error))
        else:
            self.signals.done.emit(result)


class TaskRunner(QObject):
    """Starts ``Task``s on the global thread pool and keeps them alive until they report back."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._running: set[Task] = set()

    def start(
        self,
        fn: Callable[[Callable[[int, int], None]], Any],
        name: str,
        on_done: Callable[[Any], None],
        on_failed: Callable[[str], None],
        on_progress: Callable[[int, int], None] | None = None,
    ) -> Task:
        task = Task(fn, name)
        task.signals.done.connect(on_done)
        task.signals.failed.connect(on_failed)
        if on_progress is not None:
            task.signals.progress.connect(on_progress)
        task.signals.done.connect(lambda _result, t=task: self._running.discard(t))
        task.signals.failed.connect(lambda _message, t=task: self._running.discard(t))
        self._running.add(task)
        QThreadPool.globalInstance().start(task)
        return task

    @property
    def busy(self) -> bool:
        return bool(self._running)

    def wait(self, timeout_ms: int = 30_000) -> bool:
        """Wait for running tasks (at exit, so an export in progress completes)."""
        return QThreadPool.globalInstance().waitForDone(timeout_ms)
