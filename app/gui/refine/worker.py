"""Background work: the refiner on its own QThread, and one-off jobs (import, export, image loading).

The GUI thread never waits on torch: weights are loaded, and the refiner's generator iterated, on the
refine thread, which sends one ``step`` signal per ``RefineStep``; a job's ``prepare`` callback runs there
first, so per-step work for the display (drawing the preview) is done before the GUI thread sees the step.
A stop request is honoured between steps
(the generator is closed, nothing is applied), so the instance stays exactly as it was. Every failure
becomes a ``failed`` signal with one readable message; nothing propagates into Qt's event loop.

torch and the refiner modules are imported on the refine thread the first time it needs them, so opening
the window does not wait for torch's import either.
"""
from __future__ import annotations

import itertools
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from PySide6.QtCore import QObject, QRunnable, QThread, QThreadPool, Signal, Slot

from app.core.errors import DatasetError
from app.core.images import read_image_rgb
from app.core.records import decode_mask
from app.gui.editor.document import MaskCrop

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 0.05

MaskInput = np.ndarray | dict[str, Any] | MaskCrop
"""A (H, W) bool mask, a compressed COCO RLE, or a document's MaskCrop; made whole on the refine thread."""


@dataclass(frozen=True)
class RefineJob:
    """One run of the refiner over some instances of one image."""

    job_id: int
    weights: str
    device: str
    mode: str
    steps: int
    seed: int
    image: np.ndarray | Path
    masks: Sequence[MaskInput]
    instance_ids: Sequence[int]
    region: np.ndarray | None = None
    foreground: np.ndarray | None = None
    background: np.ndarray | None = None
    min_frame_s: float = 0.0
    prepare: Callable[[Any, Sequence[np.ndarray]], None] | None = None
    """Called on the refine thread with each RefineStep, and the job's masks as the refiner got them,
    before the step is sent."""


@dataclass(frozen=True)
class WeightsChoice:
    """A registry checkpoint and whether its file was found (``problem`` says why not)."""

    name: str
    pipeline: str
    description: str
    path: Path | None
    problem: str | None = None

    @property
    def available(self) -> bool:
        return self.path is not None


@dataclass(frozen=True)
class Environment:
    """What the refine thread found: usable devices and the registry's checkpoints."""

    devices: list[str]
    weights: list[WeightsChoice] = field(default_factory=list)


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


class RefineWorker(QObject):
    """Lives on the refine thread. Slots run there; ``request_stop`` may be called from any thread."""

    probed = Signal(object)         # Environment
    loading = Signal(str)           # weights being loaded
    loaded = Signal(str, str)       # weights name, device
    notice = Signal(str)            # a recoverable event worth showing (out-of-memory fallback)
    started = Signal(int)           # job id
    step = Signal(int, object)      # job id, RefineStep
    finished = Signal(int, bool)    # job id, stopped before the end
    failed = Signal(int, str)       # job id (-1: probing), message

    def __init__(self) -> None:
        super().__init__()
        self._stop_below = 0
        self._wake = threading.Event()
        self._refiner: Any = None
        self._refiner_key: tuple[str, str] | None = None
        self._seen_fallbacks = 0

    def request_stop(self, below_job_id: int) -> None:
        """Stop every job with an id below ``below_job_id`` (the running one after its current step)."""
        self._stop_below = max(self._stop_below, below_job_id)
        self._wake.set()

    def _stopping(self, job: RefineJob) -> bool:
        return job.job_id < self._stop_below

    @Slot()
    def probe(self) -> None:
        try:
            self.probed.emit(_probe_environment())
        except Exception as error:  # a broken torch install must not take the window down
            log.exception("probing the refiner environment failed")
            self.failed.emit(-1, describe_error(error))

    @Slot(object)
    def run(self, job: RefineJob) -> None:
        if self._stopping(job):
            self.finished.emit(job.job_id, True)
            return
        self._wake.clear()
        self.started.emit(job.job_id)
        try:
            stopped = self._run(job)
        except Exception as error:
            log.exception("refinement job %d failed", job.job_id)
            self.failed.emit(job.job_id, describe_error(error))
            return
        self.finished.emit(job.job_id, stopped)

    def _run(self, job: RefineJob) -> bool:
        refiner = self._refiner_for(job.weights, job.device)
        from app.refiner.api import RefineOptions
        from app.refiner.pipeline import Guidance

        image = read_image_rgb(job.image) if isinstance(job.image, Path) else job.image
        masks = [_decode(m) for m in job.masks]
        options = RefineOptions(mode=job.mode, steps=job.steps, seed=job.seed)
        guidance = Guidance(job.region, job.foreground, job.background)
        steps = refiner.run(image, masks, options, guidance)
        last_emit = None
        try:
            for step in steps:
                self._report_fallbacks(refiner)
                if self._stopping(job):
                    return True
                if job.prepare is not None:
                    job.prepare(step, masks)
                if last_emit is not None and job.min_frame_s > 0:
                    self._wake.wait(max(0.0, last_emit + job.min_frame_s - time.monotonic()))
                    if self._stopping(job):
                        return True
                self.step.emit(job.job_id, step)
                last_emit = time.monotonic()
                if self._stopping(job) and not step.final:
                    return True
        finally:
            steps.close()
        return False

    def _refiner_for(self, weights: str, device: str) -> Any:
        key = (weights, device)
        if self._refiner_key != key:
            from app.refiner.api import Refiner

            self._refiner = self._refiner_key = None
            self.loading.emit(weights)
            self._refiner = Refiner(weights, None if device == "auto" else device)
            self._refiner_key = key
            self._seen_fallbacks = 0
            self.loaded.emit(self._refiner.name, self._refiner.device)
        return self._refiner

    def _report_fallbacks(self, refiner: Any) -> None:
        fallbacks = refiner.runner.fallbacks
        for message in fallbacks[self._seen_fallbacks:]:
            self.notice.emit(message)
        self._seen_fallbacks = len(fallbacks)


def _decode(mask: MaskInput) -> np.ndarray:
    if isinstance(mask, np.ndarray):
        return mask.astype(bool, copy=False)
    if isinstance(mask, MaskCrop):
        return mask.full()
    return decode_mask(mask)


def _probe_environment() -> Environment:
    import torch

    from app.refiner.weights import REGISTRY, WeightsError, resolve_weights

    devices = ["cpu"]
    if torch.cuda.is_available():
        devices.insert(0, "cuda")
    if torch.backends.mps.is_available():
        devices.insert(0, "mps")
    choices = []
    for entry in REGISTRY.values():
        try:
            path, _ = resolve_weights(entry.name)
            choices.append(WeightsChoice(entry.name, entry.pipeline, entry.description, path))
        except WeightsError as error:
            choices.append(WeightsChoice(entry.name, entry.pipeline, entry.description, None, str(error)))
    return Environment(devices, choices)


class RefineService(QObject):
    """The GUI side of the refine thread: submit jobs, stop them, probe; signals come from ``worker``."""

    _submit = Signal(object)
    _probe = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._ids = itertools.count(1)
        self.thread = QThread(self)
        self.thread.setObjectName("refine")
        self.worker = RefineWorker()
        self.worker.moveToThread(self.thread)
        self._submit.connect(self.worker.run)
        self._probe.connect(self.worker.probe)
        self.thread.finished.connect(self.worker.deleteLater)
        self.thread.start()
        self.last_job_id = 0

    def next_job_id(self) -> int:
        return next(self._ids)

    def submit(self, job: RefineJob) -> None:
        self.last_job_id = job.job_id
        self._submit.emit(job)

    def stop(self) -> None:
        """Stop the running job after its current step and drop any queued one."""
        self.worker.request_stop(self.last_job_id + 1)

    def probe(self) -> None:
        self._probe.emit()

    def shutdown(self, timeout_ms: int = 60_000) -> None:
        """Stop work and end the thread (at application exit)."""
        self.stop()
        self.thread.quit()
        if not self.thread.wait(timeout_ms):
            log.warning("the refine thread did not stop within %d ms", timeout_ms)


class _TaskSignals(QObject):
    progress = Signal(int, int)
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
