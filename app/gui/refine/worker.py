"""The refiner on its own QThread: jobs in, one self-contained ``RefineFrame`` per step out.

The GUI thread never waits on torch: weights are loaded, and the refiner's generator iterated, on the
refine thread, which builds each step's frame there (app/gui/refine/frames.py: previews drawn, undo
patches worked out, store masks encoded) from the job's own data and sends it with one ``frame`` signal.
No code of the GUI's controllers runs on this thread, and nothing is shared with it but immutable jobs
and frames. A stop request is honoured between steps (the generator is closed, nothing is applied), so
the instance stays exactly as it was. Every failure becomes a ``failed`` signal with one readable
message.

The refine thread leaves the GUI thread a core: it runs at a lower scheduling priority (Linux: nice
+``REFINE_NICE`` for this thread alone) and torch computes on one core fewer than the machine has
(``refine_threads``), since on a small or busy machine a GUI thread competing with every core's torch
thread waits tens of milliseconds for its turn, and torch's own threads contend (docs/decisions/0019).

torch and the refiner modules are imported on the refine thread, never on the GUI thread: by the window's
``preload`` right after it appears (so the first refinement starts at once, docs/decisions/0019), or by
the first job or probe; the window itself opens without torch (docs/decisions/0014).
"""
from __future__ import annotations

import itertools
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal, Slot

from app.core.gc_pause import freeze_survivors
from app.core.images import read_image_rgb
from app.core.records import MaskError
from app.gui.refine.frames import RefineJob, build_frame, whole_mask
from app.gui.tasks import describe_error
from app.refiner.options import RefineOptions
from app.services.refine import load_refiner

log = logging.getLogger(__name__)

PROBE_JOB = -1
PRELOAD_JOB = -2
REFINE_NICE = 5


def lower_thread_priority() -> None:
    """Give the calling (worker) thread a lower scheduling priority than the GUI thread's (Linux: nice
    +``REFINE_NICE`` for this thread alone), so the GUI thread gets a core first on a small, busy machine."""
    if sys.platform.startswith("linux"):
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), REFINE_NICE)
        except OSError as error:
            log.debug("could not lower the thread's priority: %s", error)


def refine_threads(cores: int | None = None) -> int:
    """torch's intra-op threads for the refiner: every core but one, which the GUI thread keeps."""
    return max(1, (cores or os.cpu_count() or 2) - 1)


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


class RefineWorker(QObject):
    """Lives on the refine thread. Slots run there; ``request_stop`` may be called from any thread."""

    probed = Signal(object)         # Environment
    loading = Signal(str)           # weights being loaded
    loaded = Signal(str, str)       # weights name, device
    notice = Signal(str)            # a recoverable event worth showing (out-of-memory fallback)
    started = Signal(int)           # job id
    frame = Signal(object)          # RefineFrame
    finished = Signal(int, bool)    # job id, stopped before the end
    failed = Signal(int, str)       # job id (PROBE_JOB: probing, PRELOAD_JOB: preloading), message

    def __init__(self) -> None:
        super().__init__()
        self._stop_below = 0
        self._wake = threading.Event()
        self._refiner: Any = None
        self._refiner_key: tuple[str, str] | None = None
        self._seen_fallbacks = 0
        self._image: tuple[Path, Any] | None = None

    def request_stop(self, below_job_id: int) -> None:
        """Stop every job with an id below ``below_job_id`` (the running one after its current step)."""
        self._stop_below = max(self._stop_below, below_job_id)
        self._wake.set()

    def _stopping(self, job: RefineJob) -> bool:
        return job.job_id < self._stop_below

    @Slot()
    def settle(self) -> None:
        """On the refine thread as it starts: a lower priority than the GUI thread's, where the OS allows."""
        lower_thread_priority()

    @Slot()
    def probe(self) -> None:
        try:
            self.probed.emit(_probe_environment())
        except Exception as error:  # a broken torch install must not take the window down
            log.exception("probing the refiner environment failed")
            self.failed.emit(PROBE_JOB, describe_error(error))

    @Slot(object)
    def preload(self, options: RefineOptions) -> None:
        """Load the refiner jobs with ``options`` will use (a job sent meanwhile waits for it)."""
        try:
            self._refiner_for(options)
        except Exception as error:
            log.warning("preloading the refiner failed: %s", error)
            self.failed.emit(PRELOAD_JOB, describe_error(error))

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
        refiner = self._refiner_for(job.options)
        from app.refiner.pipeline import Guidance

        image = self._read(job.image) if isinstance(job.image, Path) else job.image
        masks = []
        for instance_id, mask in zip(job.instance_ids, job.masks):
            try:
                masks.append(whole_mask(mask))
            except ValueError as error:  # a damaged project's RLE: say which instance
                raise MaskError(instance_id, str(error)) from None
        steps = refiner.run(image, masks, job.options, Guidance(job.region, job.foreground, job.background))
        last_emit = None
        try:
            for step in steps:
                self._report_fallbacks(refiner)
                if self._stopping(job):
                    return True
                frame = build_frame(job, step, masks, refiner.name)
                if last_emit is not None and job.min_frame_s > 0:
                    self._wake.wait(max(0.0, last_emit + job.min_frame_s - time.monotonic()))
                    if self._stopping(job):
                        return True
                self.frame.emit(frame)
                last_emit = time.monotonic()
                if self._stopping(job) and not step.final:
                    return True
        finally:
            steps.close()
        return False

    def _read(self, path: Path) -> Any:
        """An image file, decoded once for the queue's consecutive jobs on it (one job per instance)."""
        if self._image is None or self._image[0] != path:
            self._image = None
            self._image = (path, read_image_rgb(path))
        return self._image[1]

    def _refiner_for(self, options: RefineOptions) -> Any:
        key = (options.weights, options.device)
        if self._refiner_key != key:
            self._refiner = self._refiner_key = None
            self.loading.emit(options.weights)
            import torch

            torch.set_num_threads(refine_threads())
            self._refiner = load_refiner(options)
            self._refiner_key = key
            self._seen_fallbacks = 0
            # The first refinement may be waiting for this load: no collection here (0.2 s). Opening a project,
            # which a project switch needs, collects.
            freeze_survivors(collect_first=False)
            self.loaded.emit(self._refiner.name, self._refiner.device)
        return self._refiner

    def _report_fallbacks(self, refiner: Any) -> None:
        fallbacks = refiner.runner.fallbacks
        for message in fallbacks[self._seen_fallbacks:]:
            self.notice.emit(message)
        self._seen_fallbacks = len(fallbacks)


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
    """The GUI side of the refine thread: submit jobs, stop them, probe, preload; signals come from ``worker``.

    ``probe()`` (once) and ``preload()`` import torch on the refine thread; the window asks for them once its
    first image is on screen, or earlier when the user turns to the refiner (a run, the weights or device
    list, the settings dialog).
    """

    _submit = Signal(object)
    _probe = Signal()
    _preload = Signal(object)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._ids = itertools.count(1)
        self.thread = QThread(self)
        self.thread.setObjectName("refine")
        self.worker = RefineWorker()
        self.worker.moveToThread(self.thread)
        self._submit.connect(self.worker.run)
        self._probe.connect(self.worker.probe)
        self._preload.connect(self.worker.preload)
        self.thread.finished.connect(self.worker.deleteLater)
        self.thread.started.connect(self.worker.settle)
        self.thread.start()
        self.last_job_id = 0
        self.probe_requested = False

    def next_job_id(self) -> int:
        return next(self._ids)

    def submit(self, job: RefineJob) -> None:
        self.last_job_id = job.job_id
        self._submit.emit(job)

    def stop(self) -> None:
        """Stop the running job after its current step and drop any queued one."""
        self.worker.request_stop(self.last_job_id + 1)

    def probe(self) -> None:
        """Look for devices and weights on the refine thread, once (``worker.probed`` answers)."""
        if not self.probe_requested:
            self.probe_requested = True
            self._probe.emit()

    def preload(self, options: RefineOptions) -> None:
        """Probe, then load the refiner for ``options`` on the refine thread (the window, once it is up)."""
        self.probe()
        self._preload.emit(options)

    def shutdown(self, timeout_ms: int = 60_000) -> None:
        """Stop work and end the thread (at application exit)."""
        self.stop()
        self.thread.quit()
        if not self.thread.wait(timeout_ms):
            log.warning("the refine thread did not stop within %d ms", timeout_ms)
