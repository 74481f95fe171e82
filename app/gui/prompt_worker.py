"""The prompt tools and find-similar on their own QThread: jobs in, finished masks or reports out.

The GUI thread never computes a mask: the coarse source (GrabCut, the prompt head, a SAM checkpoint) and the
refiner run here, through the services (app/services/prompt.py, app/services/similar.py), and what comes back
is ready to use: a box's mask cut to its bounding box with a preview image drawn (and each refiner step on
the way as a preview), a click's change cut to the rectangle it changed. The tool is loaded on the first job and
kept while the settings stay the same; a file that cannot be loaded (a SAM checkpoint of the wrong shape) fails
the job with one message naming it.

Find-similar writes its proposals itself, through a second connection to the project opened on this thread
(``ProjectStore.sibling``, covered by the window's writer lock), image by image, with progress and a stop
asked between images. Jobs run one at a time in the order sent.
"""
from __future__ import annotations

import itertools
import logging
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np
from PySide6.QtCore import QObject, QThread, Signal, Slot
from PySide6.QtGui import QImage

from app.core import mask_ops
from app.core.mask_ops import Rect
from app.core.records import Provenance
from app.core.store.project import ProjectStore
from app.gui.editor.layers import MaskCrop, MaskUpdate, prepare_update
from app.gui.refine.worker import lower_thread_priority
from app.gui.tasks import describe_error
from app.refiner.prompts import Click, PromptError
from app.services.prompt import PromptSettings, load_prompt_tool, prompted_provenance
from app.refiner.similar import DEFAULT_THRESHOLD
from app.refiner.steps import MaskPatch, RefineStep
from app.services.similar import ProjectSimilar, SimilarReport, SimilarSettings, find_similar, load_finder

log = logging.getLogger(__name__)

PREVIEW_SIDE = 1024
"""Long side of a box preview image at most: the GUI thread turns it into a pixmap."""
PREVIEW_RGBA = (255, 200, 0, 120)


@dataclass(frozen=True, eq=False)
class PromptJob:
    """A box (``box``) or a click (the last of ``clicks``) on image ``image_id``; ``current`` is the clicked
    instance's mask (None: a new instance) at ``base_version``."""

    job_id: int
    image_id: int
    image: np.ndarray
    settings: PromptSettings
    box: tuple[float, float, float, float] | None = None
    clicks: tuple[Click, ...] = ()
    instance_id: int | None = None
    current: MaskCrop | None = None
    base_version: int = 0


@dataclass(frozen=True, eq=False)
class PromptOutcome:
    """A job's mask: inside ``rect`` the new pixels (a click: where it changed; None: nothing changed)."""

    job: PromptJob
    rect: Rect | None
    pixels: np.ndarray | None
    provenance: Provenance
    area: int
    """The instance's pixels after the prompt (counted here, not on the GUI thread)."""
    preview: QImage | None = None
    update: MaskUpdate | None = None
    """A click's change as an undo patch worked out here against the instance at the job's ``base_version``."""

    def full(self) -> np.ndarray:
        """The whole new mask of a new instance (the pixels inside ``rect``, nothing outside)."""
        return MaskCrop(self.job.image.shape[:2], self.rect, self.pixels).full()


@dataclass(frozen=True, eq=False)
class SimilarJob:
    """Find instances like ``instance_ids`` on ``image_ids`` (None: every image) of the store's project."""

    job_id: int
    store: ProjectStore
    instance_ids: tuple[int, ...]
    image_ids: tuple[int, ...] | None
    settings: SimilarSettings


@dataclass(frozen=True, eq=False)
class SimilarityJob:
    """The similarity map of image ``image_id`` to ``instance_ids``: the threshold slider's preview."""

    job_id: int
    store: ProjectStore
    instance_ids: tuple[int, ...]
    image_id: int
    settings: SimilarSettings


def preview_image(pixels: np.ndarray) -> QImage:
    """The mask as a translucent overlay, its long side at most ``PREVIEW_SIDE`` (premultiplied ARGB32)."""
    h, w = pixels.shape
    scale = min(1.0, PREVIEW_SIDE / max(h, w))
    small = pixels.astype(np.uint8)
    if scale < 1.0:
        small = cv2.resize(small, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    r, g, b, a = PREVIEW_RGBA
    bgra = np.zeros((*small.shape, 4), np.uint8)
    bgra[small > 0] = (b * a // 255, g * a // 255, r * a // 255, a)
    image = QImage(bgra.data, bgra.shape[1], bgra.shape[0], bgra.shape[1] * 4,
                   QImage.Format.Format_ARGB32_Premultiplied)
    return image.copy()  # own the pixels: the array goes away


def step_pixels(patch: MaskPatch, coarse: np.ndarray, coarse_rect: Rect | None) -> tuple[Rect | None, np.ndarray | None]:
    """The bounding rectangle of a step's whole mask (``patch`` inside its box, ``coarse`` outside) and its pixels.

    When the coarse mask (its bounding rectangle ``coarse_rect``) lies inside the patch's box, both come from the
    patch alone: on a large photo a full-size mask per step is tens of megabytes allocated and scanned for nothing.
    """
    x0, y0, x1, y1 = patch.box
    if coarse_rect is None or mask_ops.intersect_rect(coarse_rect, patch.box) == coarse_rect:
        local = mask_ops.mask_bbox(patch.mask)
        if local is None:
            return None, None
        return (local[0] + x0, local[1] + y0, local[2] + x0, local[3] + y0), mask_ops.take_patch(patch.mask, local)
    whole = patch.full_mask(coarse.shape, coarse)
    rect = mask_ops.mask_bbox(whole)
    return rect, None if rect is None else mask_ops.take_patch(whole, rect)


class PromptWorker(QObject):
    """Lives on the prompt thread; ``request_stop`` may be called from any thread."""

    done = Signal(object)               # PromptOutcome
    step = Signal(int, object, object, str)  # job id, rect, preview QImage, "step 2 of 3": a box's refinement
    failed = Signal(int, str)           # job id, message
    similar_progress = Signal(int, int, int, str)  # job id, images done, images in all, what happened
    similar_done = Signal(int, object)  # job id, SimilarReport
    similarity = Signal(int, object)    # job id, the similarity map (stride-8 grid, cosine)

    def __init__(self) -> None:
        super().__init__()
        self._tool: Any = None
        self._tool_key = ""
        self._finder: Any = None
        self._finder_key = ""
        self._stop = threading.Event()

    @Slot()
    def settle(self) -> None:
        """On the prompt thread as it starts: below the GUI thread, as the refine thread is (0019)."""
        lower_thread_priority()

    def request_stop(self) -> None:
        self._stop.set()

    def clear_stop(self) -> None:
        """A new search is coming: an earlier stop request is done with."""
        self._stop.clear()

    @Slot(object)
    def run(self, job: PromptJob | SimilarJob | SimilarityJob) -> None:
        try:
            if isinstance(job, SimilarJob):
                self.similar_done.emit(job.job_id, self._similar(job))
            elif isinstance(job, SimilarityJob):
                self.similarity.emit(job.job_id, self._similarity(job))
            else:
                self.done.emit(self._prompt(job))
        except PromptError as error:
            self.failed.emit(job.job_id, str(error))
        except Exception as error:  # a bad checkpoint or a broken install must not take the window down
            log.exception("prompt job %d failed", job.job_id)
            self.failed.emit(job.job_id, _message(error))

    def _prompt(self, job: PromptJob) -> PromptOutcome:
        tool = self._tool_for(job.settings)
        provenance = prompted_provenance(tool)
        if job.box is not None:
            return self._new_instance(job, self._animate(job, *tool.box_steps(job.image, job.box)), provenance)
        if job.current is None or job.instance_id is None:
            return self._new_instance(job, tool.click(job.image, None, job.clicks).mask, provenance)
        before = job.current.full()
        after = tool.click(job.image, before, job.clicks).mask
        rect = mask_ops.changed_rect(before, after)
        if rect is None:
            return PromptOutcome(job, None, None, provenance, int(np.count_nonzero(after)))
        pixels = mask_ops.take_patch(after, rect)
        update = prepare_update(job.instance_id, rect, pixels, job.current.region(rect), job.base_version, provenance)
        return PromptOutcome(job, rect, pixels, provenance, int(np.count_nonzero(after)), update=update)

    def _animate(self, job: PromptJob, coarse: np.ndarray, steps: Iterator[RefineStep] | None) -> np.ndarray:
        """The refiner's steps on a box's coarse mask, each sent as a preview; the last step's mask."""
        mask = coarse
        if steps is None:
            return mask
        outer = mask_ops.mask_bbox(coarse)
        try:
            for step in steps:
                if step.final:
                    mask = step.mask(0, base=coarse)
                    continue
                rect, pixels = step_pixels(step.results[0], coarse, outer)
                if rect is not None:
                    preview = preview_image(pixels)
                    self.step.emit(job.job_id, rect, preview, f"refining, step {step.step} of {step.total}")
        finally:
            steps.close()
        return mask

    @staticmethod
    def _new_instance(job: PromptJob, mask: np.ndarray, provenance: Provenance) -> PromptOutcome:
        rect = mask_ops.mask_bbox(mask)
        if rect is None:
            return PromptOutcome(job, None, None, provenance, 0)
        pixels = mask_ops.take_patch(mask, rect)
        return PromptOutcome(job, rect, pixels, provenance, int(np.count_nonzero(pixels)), preview_image(pixels))

    def _tool_for(self, settings: PromptSettings) -> Any:
        key = repr(settings)
        if key != self._tool_key:
            self._tool = self._tool_key = None
            self._tool = load_prompt_tool(settings)
            self._tool_key = key
            log.info("prompt tool loaded: %s", self._tool.source.name)
        return self._tool

    def _finder_for(self, project: Path, settings: SimilarSettings) -> Any:
        key = repr((project, replace(settings, threshold=DEFAULT_THRESHOLD)))  # the threshold is the caller's
        if key != self._finder_key:
            self._finder = self._finder_key = None
            self._finder = load_finder(project, settings)
            self._finder_key = key
        return self._finder

    def _similarity(self, job: SimilarityJob) -> np.ndarray:
        finder = self._finder_for(job.store.path, job.settings)
        store = job.store.sibling()
        try:
            search = ProjectSimilar(store, finder)
            try:
                return search.similarity(job.image_id, search.examples(job.instance_ids))
            finally:
                search.close()
        finally:
            store.close()

    def _similar(self, job: SimilarJob) -> SimilarReport:
        finder = self._finder_for(job.store.path, job.settings)
        store = job.store.sibling()
        try:
            return find_similar(store, finder, job.instance_ids, job.image_ids, job.settings.threshold,
                                progress=lambda done, total, what: self.similar_progress.emit(job.job_id, done,
                                                                                              total, what),
                                should_stop=self._stop.is_set)
        finally:
            store.close()


def _message(error: BaseException) -> str:
    """Our own errors (a SAM file refused, examples that cannot be used) read as they are."""
    if type(error).__name__ in ("SamError", "SimilarError", "PromptHeadError", "ProjectError"):
        return str(error)
    return describe_error(error)


class PromptService(QObject):
    """The GUI side of the prompt thread: submit jobs, stop a search; signals come from ``worker``."""

    _submit = Signal(object)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._ids = itertools.count(1)
        self.thread = QThread(self)
        self.thread.setObjectName("prompt")
        self.worker = PromptWorker()
        self.worker.moveToThread(self.thread)
        self._submit.connect(self.worker.run)
        self.thread.finished.connect(self.worker.deleteLater)
        self.thread.started.connect(self.worker.settle)
        self.thread.start()

    def next_job_id(self) -> int:
        return next(self._ids)

    def submit(self, job: PromptJob | SimilarJob | SimilarityJob) -> None:
        if isinstance(job, SimilarJob):
            self.worker.clear_stop()  # here, not when it starts: a Stop while it waits its turn counts
        self._submit.emit(job)

    def stop(self) -> None:
        """Stop a search after the image it is on (what it saved stays)."""
        self.worker.request_stop()

    def shutdown(self, timeout_ms: int = 60_000) -> None:
        self.stop()
        self.thread.quit()
        if not self.thread.wait(timeout_ms):
            log.warning("the prompt thread did not stop within %d ms", timeout_ms)
