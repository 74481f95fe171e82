"""Refinement in the window: the interactive run of one instance, and the queue for many.

Interactive (the selected instance): every frame the refine thread sends is kept and its preview drawn;
when the run finishes or is stopped, the scrubber picks any step, and Accept applies it as one undo step
with its provenance (weights, mode, reverse steps, mean confidence). Nothing touches the instance until
then, so Stop or Reject leave it exactly as it was.

Queue (all instances of the image, or every unreviewed instance of the project): the instances come from
``Selection`` (app/services/selection.py), the same rules as the headless ``refine``, and their files from
the same resolver. One job per image (per instance in HR mode, which refines one mask at a time). Each
finished job is applied at once: on the open image as one undoable step, elsewhere straight into the store
(on the writer thread, ``save_refinement``) with the same provenance; statuses stay "unreviewed", so the
instance list's "largest change" and "lowest confidence" sorts lead the review (docs/decisions/0006).

Everything that costs on large photos (drawing previews, working out undo patches, encoding masks) was
done by the refine thread into the frame (app/gui/refine/frames.py); this controller only reads frames.
"""
from __future__ import annotations

import logging
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, Signal

from app.core.errors import DatasetError
from app.core.records import ReviewStatus
from app.gui.controller import ProjectController
from app.gui.editor.document import ImageDocument
from app.gui.editor.preview import DiffColors
from app.gui.refine.frames import InstanceFrame, MaskInput, RefineFrame, RefineJob, whole_mask
from app.gui.refine.worker import RefineService
from app.refiner.options import RefineOptions
from app.refiner.steps import RefineStep
from app.services.refine import encoded
from app.services.selection import Selection, image_file, select_instances

log = logging.getLogger(__name__)

UNREVIEWED = Selection(statuses=(ReviewStatus.UNREVIEWED,))
""""Refine All Unreviewed": what the headless ``refine`` takes by default."""


@dataclass
class RefineRun:
    """One refiner job and the states its frames produced (cumulative: a step moves some instances)."""

    job: RefineJob
    image_id: int
    snapshots: list[dict[int, InstanceFrame]] = field(default_factory=list)
    steps: list[RefineStep] = field(default_factory=list)
    running: bool = True
    stopped: bool = False

    latest: dict[int, InstanceFrame] = field(default_factory=dict)
    """The newest state with the preview images the refine thread drew; ``snapshots`` keep none (a large
    photo's previews cost tens of megabytes a step), so an earlier step is drawn by the canvas."""

    def add(self, frame: RefineFrame) -> dict[int, InstanceFrame]:
        self.latest = {**self.latest, **frame.instances}
        kept = {i: replace(state, preview=None) for i, state in self.latest.items()}
        if self.job.keep_steps:
            self.snapshots.append(kept)
            self.steps.append(frame.step)
        else:
            self.snapshots, self.steps = [kept], [frame.step]
        return self.latest

    def state(self, index: int, instance_id: int) -> InstanceFrame:
        """An instance at the ``index``-th kept step (with its drawn preview when it is the newest)."""
        if index in (-1, len(self.snapshots) - 1):
            return self.latest[instance_id]
        return self.snapshots[index][instance_id]

    def coarse(self, instance_id: int) -> MaskInput:
        return self.job.masks[list(self.job.instance_ids).index(instance_id)]


@dataclass(frozen=True)
class QueueItem:
    image_id: int
    instance_ids: tuple[int, ...]


class RefineController(QObject):
    """Runs refinements for the window and keeps their steps for the scrubber."""

    state_changed = Signal()
    step_shown = Signal(int, int, str)      # shown step (1-based), steps so far, description
    queue_progress = Signal(int, int)       # instances done, total
    message = Signal(str)
    error = Signal(str, str)

    def __init__(self, project: ProjectController, service: RefineService, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.project = project
        self.service = service
        self.want_confidence = False
        self.diff_colors = DiffColors()
        self.min_frame_s = 0.0
        self.session: RefineRun | None = None
        self.session_doc: ImageDocument | None = None
        self.shown = -1
        self.queue_run: RefineRun | None = None
        self._queue: deque[QueueItem] = deque()
        self._queue_options: RefineOptions | None = None
        self.queue_total = 0
        self.queue_done = 0
        self.queue_paused = False
        self._writes: list[Future[Any]] = []
        worker = service.worker
        worker.frame.connect(self._on_frame)
        worker.finished.connect(self._on_finished)
        worker.failed.connect(self._on_failed)
        project.document_changed.connect(self._document_changed)

    # ------------------------------------------------------------------------------- state
    @property
    def running(self) -> bool:
        return self.session is not None and self.session.running

    @property
    def reviewing(self) -> bool:
        """A finished (or stopped) interactive run waits for Accept or Reject."""
        return self.session is not None and not self.session.running and bool(self.session.snapshots)

    @property
    def queue_active(self) -> bool:
        return self.queue_run is not None or bool(self._queue) or self._writing

    @property
    def step_count(self) -> int:
        return 0 if self.session is None else len(self.session.snapshots)

    def _job(self, options: RefineOptions, image: np.ndarray | Path, masks: list[MaskInput], ids: list[int],
             doc: ImageDocument | None, keep_steps: bool, **guidance: np.ndarray | None) -> RefineJob:
        """A job; on the open document ``doc`` its instances' versions and the selection go with it."""
        return RefineJob(
            self.service.next_job_id(), options, image, masks, ids, min_frame_s=self.min_frame_s,
            base_versions={i: doc.mask_version(i) for i in ids} if doc is not None else {},
            focus_id=doc.selected_id if doc is not None else None, colors=self.diff_colors,
            heat=self.want_confidence, keep_steps=keep_steps, **guidance,
        )

    # ------------------------------------------------------------------------------- interactive
    def refine_selected(self, options: RefineOptions) -> bool:
        doc = self.project.doc
        if doc is None or doc.selected_id is None:
            self.message.emit("Select an instance to refine")
            return False
        if self.queue_active:
            self.message.emit("The refine queue is running: pause or cancel it first")
            return False
        layer = doc.layer(doc.selected_id)
        if layer.locked:
            self.message.emit(f"Instance {layer.id} is locked")
            return False
        if not layer.mask.any():
            self.message.emit(f"Instance {layer.id} is empty: paint a coarse mask first")
            return False
        self.discard()
        job = self._job(options, doc.image, [doc.snapshot(layer.id)], [layer.id], doc, True,
                        **doc.guidance_snapshot())
        self.session = RefineRun(job, doc.image_id)
        self.session_doc = doc
        self.shown = -1
        self.service.submit(job)
        self.message.emit(f"Refining instance {layer.id} ({options.mode}, {options.steps} steps)…")
        self.state_changed.emit()
        return True

    def stop(self) -> None:
        """Stop the interactive run after its current step, or cancel the queue."""
        if self.running:
            self.service.stop()
        elif self.queue_active:
            self.cancel_queue()

    def show_step(self, index: int) -> None:
        """Show the ``index``-th (0-based) kept step of the interactive run as the preview."""
        run, doc = self.session, self.session_doc
        if run is None or doc is None or not run.snapshots:
            return
        index = max(0, min(index, len(run.snapshots) - 1))
        self.shown = index
        state = run.state(index, run.job.instance_ids[0])
        self._preview(doc, state)
        step = run.steps[index]
        text = (f"step {index + 1}/{max(step.total, len(run.snapshots))} · {step.stage} · "
                f"{state.patch.changed} px changed · confidence {state.provenance.mean_confidence:.2f}")
        self.step_shown.emit(index + 1, len(run.snapshots), text)

    def accept(self) -> bool:
        """Apply the shown step to the instance: one undo step, provenance recorded."""
        run, doc = self.session, self.session_doc
        if run is None or doc is None or run.running or not run.snapshots:
            return False
        instance_id = run.job.instance_ids[0]
        if not doc.has_layer(instance_id):
            self.discard()
            return False
        state = run.state(self.shown, instance_id)
        self._end_session()
        doc.apply_updates([state.as_update()], "refine")
        self.message.emit(f"Accepted the refinement of instance {instance_id} ({state.patch.changed} px changed)")
        return True

    def reject(self) -> None:
        if self.session is not None:
            self.discard()
            self.message.emit("Refinement discarded; the instance is unchanged")

    def discard(self) -> None:
        """Forget the interactive run (stopping it if it still runs); the instance stays as it was."""
        if self.session is None:
            return
        if self.session.running:
            self.service.stop()
        self._end_session()

    def _end_session(self) -> None:
        doc = self.session_doc
        self.session = self.session_doc = None
        self.shown = -1
        if doc is not None and doc is self.project.doc:
            doc.clear_preview()
        self.state_changed.emit()

    # ------------------------------------------------------------------------------- queue
    def refine_image(self, options: RefineOptions) -> bool:
        """Every instance of the open image the selection rules allow, whatever its status."""
        doc = self.project.doc
        if doc is None:
            return False
        selection = Selection(statuses=None, image_id=doc.image_id, redo=True)
        return self._start_queue(options, selection, f"image {doc.image_id}")

    def refine_dataset(self, options: RefineOptions) -> bool:
        """Every unreviewed instance of the project not refined yet: what ``refine`` does headless."""
        return self._start_queue(options, UNREVIEWED, "the unreviewed instances")

    def _start_queue(self, options: RefineOptions, selection: Selection, what: str) -> bool:
        if self.queue_active:
            self.message.emit("The refine queue is already running")
            return False
        store = self.project.store
        if store is None:
            return False
        self.project.flush()  # the store must hold every edit (lock, hide, strokes) the selection reads
        by_image = select_instances(store, selection)
        total = sum(len(ids) for ids in by_image.values())
        if not total:
            self.message.emit(f"Nothing to refine in {what}")
            return False
        self.discard()
        items: list[QueueItem] = []
        for image_id, ids in by_image.items():
            if options.mode == "hr":
                items += [QueueItem(image_id, (i,)) for i in ids]
            else:
                items.append(QueueItem(image_id, tuple(ids)))
        self._queue = deque(items)
        self._queue_options = options
        self.queue_total, self.queue_done, self.queue_paused = total, 0, False
        self.message.emit(f"Refining {total} instances of {what}…")
        self.queue_progress.emit(0, total)
        self._next_job()
        self.state_changed.emit()
        return True

    def set_paused(self, paused: bool) -> None:
        """Pause after the current job, or resume."""
        self.queue_paused = paused
        if not paused and self.queue_run is None and self._queue:
            self._next_job()
        self.state_changed.emit()

    def cancel_queue(self) -> None:
        if not self.queue_active:
            return
        self._queue.clear()
        self._flush_writes()
        if self.queue_run is not None:
            self.service.stop()
            self._clear_queue_preview()
            self.queue_run = None
        self.message.emit(f"Refine queue cancelled after {self.queue_done} of {self.queue_total} instances")
        self._finish_queue()

    def _next_job(self) -> None:
        options = self._queue_options
        assert options is not None
        while self._queue and not self.queue_paused:
            item = self._queue.popleft()
            job = self._queue_job(item, options)
            if job is None:
                self.queue_done += len(item.instance_ids)
                self.queue_progress.emit(self.queue_done, self.queue_total)
                continue
            self.queue_run = RefineRun(job, item.image_id)
            self.service.submit(job)
            return
        if not self._queue and self.queue_run is None and not self._writing:
            self.message.emit(f"Refined {self.queue_done} instances; sort the list by largest change to review")
            self._finish_queue()

    def _queue_job(self, item: QueueItem, options: RefineOptions) -> RefineJob | None:
        """The job of a queue item: image and masks from the open document, else the file and the store."""
        doc, store = self.project.doc, self.project.store
        if doc is not None and doc.image_id == item.image_id:
            ids = [i for i in item.instance_ids if doc.has_layer(i)]
            if not ids:
                return None
            return self._job(options, doc.image, [doc.snapshot(i) for i in ids], ids, doc, False)
        if store is None:
            return None
        record = store.image(item.image_id)
        try:
            path = image_file(store, record)
        except DatasetError as error:
            self.message.emit(f"Skipped image {error}")
            return None
        wanted = set(item.instance_ids)
        stored = [inst for inst in store.instances_for_image(item.image_id) if inst.id in wanted]
        if not stored:
            return None
        return self._job(options, path, [inst.rle for inst in stored], [inst.id for inst in stored], None, False)

    def _finish_queue(self) -> None:
        self._queue_options = None
        self.queue_paused = False
        self.queue_progress.emit(self.queue_total, self.queue_total)
        self.state_changed.emit()

    def _apply_queue_run(self, run: RefineRun) -> None:
        """Results on the open image: one undoable step now, with the patches the refine thread worked out.
        Elsewhere: written by the writer thread, one per event loop turn, so saving a batch never holds the
        window up (the masks were encoded on the refine thread)."""
        final = {i: state for i, state in (run.snapshots[-1] if run.snapshots else {}).items()
                 if not state.patch.skipped}
        doc = self.project.doc
        if doc is None or doc.image_id != run.image_id:
            self._writes = [f for f in self._writes if not f.done()]
            for instance_id, state in final.items():
                coarse = run.coarse(instance_id)
                self._writes.append(self.project.save_refinement(
                    instance_id, lambda s=state, c=coarse: s.rle if s.rle is not None else encoded(s.patch, whole_mask(c)),
                    state.provenance, self._written))
            return
        doc.clear_preview()
        updates = [state.as_update() for instance_id, state in final.items() if doc.has_layer(instance_id)]
        if updates:
            doc.apply_updates(updates, "refine", f"Refine {len(updates)} instances")

    @property
    def _writing(self) -> bool:
        return any(not f.done() for f in self._writes)

    def _written(self) -> None:
        if not self._writing and not self._queue and self.queue_run is None and self._queue_options is not None:
            self._next_job()

    def _flush_writes(self) -> None:
        """Wait for the results handed to the writer (the queue is being cancelled: finished work is kept)."""
        self.project.writer.finish()

    def _clear_queue_preview(self) -> None:
        doc = self.project.doc
        if doc is not None and self.queue_run is not None and doc.image_id == self.queue_run.image_id:
            doc.clear_preview()

    # ------------------------------------------------------------------------------- worker signals
    def _on_frame(self, frame: RefineFrame) -> None:
        run = self.session
        if run is not None and run.job.job_id == frame.job_id:
            run.add(frame)
            following = self.shown < 0 or self.shown == len(run.snapshots) - 2
            if following:
                self.show_step(len(run.snapshots) - 1)
            else:
                self.step_shown.emit(self.shown + 1, len(run.snapshots), "")
            return
        run = self.queue_run
        if run is not None and run.job.job_id == frame.job_id:
            current = run.add(frame)
            doc = self.project.doc
            if doc is not None and doc.image_id == run.image_id:
                shown = doc.selected_id if doc.selected_id in current else frame.first_id
                showing = doc.preview is not None and doc.preview.mask is current[shown].patch.mask
                if doc.has_layer(shown) and not showing:
                    self._preview(doc, current[shown])

    def _on_finished(self, job_id: int, stopped: bool) -> None:
        run = self.session
        if run is not None and run.job.job_id == job_id:
            run.running, run.stopped = False, stopped
            if not run.snapshots:
                self._end_session()
                self.message.emit("Refinement stopped before its first step; the instance is unchanged")
                return
            if run.snapshots[-1][run.job.instance_ids[0]].patch.skipped:
                self._end_session()
                self.message.emit(f"This instance is too small for the refiner (under "
                                  f"{run.job.options.smallest_area} pixels in {run.job.options.mode} mode); "
                                  "nothing changed")
                return
            verb = "stopped after" if stopped else "finished:"
            self.message.emit(f"Refinement {verb} {len(run.snapshots)} steps; Accept (Shift+Enter) or Reject "
                              "(Backspace); the scrubber shows every step")
            self.state_changed.emit()
            return
        run = self.queue_run
        if run is not None and run.job.job_id == job_id:
            self.queue_run = None
            if not stopped:
                self._apply_queue_run(run)
                self.queue_done += len(run.job.instance_ids)
                self.queue_progress.emit(self.queue_done, self.queue_total)
                self._next_job()
            self.state_changed.emit()

    def _on_failed(self, job_id: int, message: str) -> None:
        if self.session is not None and self.session.job.job_id == job_id:
            self._end_session()
            self.error.emit("Refinement failed", message)
        elif self.queue_run is not None and self.queue_run.job.job_id == job_id:
            self._clear_queue_preview()
            self.queue_run = None
            self._queue.clear()
            self._flush_writes()
            self._finish_queue()
            self.error.emit("Refinement failed", f"{message}\nThe queue was stopped; finished instances are kept.")

    def _document_changed(self, doc: ImageDocument | None) -> None:
        if self.session is not None and self.session_doc is not doc:
            self.discard()

    def _preview(self, doc: ImageDocument, state: InstanceFrame) -> None:
        doc.set_preview(state.as_preview())
