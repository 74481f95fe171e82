"""The project's writes, on their own thread.

Every edit is one committed SQLite transaction with a full fsync (app/core/store/project.py), which on a busy
disk or a large mask takes tens of milliseconds: on the GUI thread that would stall painting after each
stroke and each refinement written. The window therefore hands its writes to ``StoreWriter``: one thread
with its own connection to the project, running them in the order they were made, so an edit and its
undo, or a deletion and its revert, reach the file in sequence. Results and errors come back to the GUI
thread as callbacks.

The window's own store keeps the project's writer lock and serves the reads (WAL readers see each commit
as soon as it is made); ``finish()`` waits until everything handed over is written. A read-only project
(another window holds the lock) gets no second connection: its writes run against the window's store,
which refuses them with the usual ``ReadOnlyProjectError``.
"""
from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, TypeVar

from PySide6.QtCore import QObject, Signal, Slot

from app.core.errors import DatasetError
from app.core.store.project import ProjectStore

log = logging.getLogger(__name__)

T = TypeVar("T")
Write = Callable[[ProjectStore], T]


class StoreWriter(QObject):
    """Runs ``write(store)`` calls one after another on a thread of their own."""

    _deliver = Signal(object, object)   # callback, its argument: run on the GUI thread

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-writer")
        self._store: ProjectStore | None = None
        self._fallback: ProjectStore | None = None
        self._pending: list[Future[Any]] = []
        self._deliver.connect(self._call)

    def attach(self, store: ProjectStore | None) -> None:
        """Write to ``store``'s project from now on (None: to nothing), after finishing earlier writes."""
        self.finish()
        if self._store is not None:
            self._executor.submit(self._store.close).result()
        self._store = None
        self._fallback = store
        if store is not None and not store.read_only:
            self._store = self._executor.submit(store.sibling).result()

    def submit(
        self, write: Write[T], on_done: Callable[[T], None] | None = None,
        on_error: Callable[[DatasetError], None] | None = None,
    ) -> Future[T | None]:
        """Queue ``write``; ``on_done(result)`` or ``on_error(error)`` (a DatasetError) follow on the GUI
        thread. Other exceptions are logged and re-raised by ``finish``."""
        if self._store is None:
            future: Future[T | None] = Future()
            try:
                future.set_result(self._execute(write, self._fallback, on_done, on_error))
            except Exception as e:
                future.set_exception(e)
            return future
        future = self._executor.submit(self._execute, write, self._store, on_done, on_error)
        self._pending = [f for f in self._pending if not f.done()]
        self._pending.append(future)
        return future

    def call(self, write: Write[T]) -> T:
        """Run ``write`` after everything queued and return its result (raises what it raises)."""
        if self._store is None:
            if self._fallback is None:
                raise RuntimeError("no project to write to")
            return write(self._fallback)
        store = self._store
        return self._executor.submit(lambda: write(store)).result()

    def finish(self) -> None:
        """Wait until everything handed over is written."""
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()

    @property
    def busy(self) -> bool:
        return any(not f.done() for f in self._pending)

    def shutdown(self) -> None:
        self.attach(None)
        self._executor.shutdown(wait=True)

    # ----- internals
    def _execute(self, write: Write[T], store: ProjectStore | None, on_done: Callable[[T], None] | None,
                 on_error: Callable[[DatasetError], None] | None) -> T | None:
        if store is None:
            return None
        try:
            result = write(store)
        except DatasetError as e:
            log.warning("write to %s failed: %s", store.path, e)
            if on_error is not None:
                self._deliver.emit(on_error, e)
            return None
        except Exception:
            log.exception("write to %s failed", store.path)
            raise
        if on_done is not None:
            self._deliver.emit(on_done, result)
        return result

    @Slot(object, object)
    def _call(self, callback: Callable[[Any], None], value: Any) -> None:
        callback(value)
