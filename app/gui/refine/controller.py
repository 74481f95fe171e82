"""Refinement in the window: the interactive run of one instance, and the queue for many.

Interactive (the selected instance): every frame the refine thread sends is kept and its preview drawn;
when the run finishes or is stopped, the scrubber picks any step, and Accept applies it as one undo step
with its provenance (weights, mode, reverse steps, mean confidence). Nothing touches the instance until
then, so Stop or Reject leave it exactly as it was.

Stop is authoritative: once Esc is pressed the run is over for the window, and a frame or a "finished"
the refine thread had already sent changes nothing.

Queue (all instances of the image, or every unreviewed instance of the project): the instances come from
``plan_refinement`` (app/services/selection.py), the same rules as the headless ``refine`` (crowd regions,
locked and empty instances never), and their files from the same resolver. One job per instance, so Pause
holds the queue after the instance in flight and progress moves instance by instance (docs/decisions/0019);
an instance locked, deleted or without its image file when its turn comes is left out and counted. Each
finished job is applied at once: on the open image as an undoable step that the next instance of the same
run on that image merges into (one undo step per image), elsewhere straight into the store (on the writer
thread, ``save_refinement``) with the same provenance; statuses stay "unreviewed", so the instance list's
"largest change" and "lowest confidence" sorts lead the review (docs/decisions/0006).

Everything that costs on large photos (drawing previews, working out undo patches, encoding masks) was
done by the refine thread into the frame (app/gui/refine/frames.py); this controller only reads frames.
"""
from __future__ import annotations

import itertools
import logging
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, Signal

from app.core.errors import DatasetError
from app.core.records import ReviewStatus
from app.core.store.errors import ProjectError
from app.core.wording import plural
from app.gui.controller import ProjectController
from app.gui.editor.document import ImageDocument
from app.gui.editor.preview import DiffColors
from app.gui.refine.frames import InstanceFrame, MaskInput, RefineFrame, RefineJob, whole_mask
from app.gui.refine.queue import GONE, MISSING_FILE, TOO_SMALL, QueueItem, QueueStats, skipped_text
from app.gui.refine.worker import RefineService
from app.refiner.options import RefineOptions
from app.refiner.steps import RefineStep
from app.services.refine import encoded
from app.services.selection import CROWD, EMPTY, LOCKED, RefinePlan, Selection, image_file, never_refined, plan_refinement

log = logging.getLogger(__name__)


def unreviewed(options: RefineOptions) -> Selection:
    """What Refine All Unreviewed takes, as the headless ``refine`` does by default: the unreviewed instances the
    refiner can refine (not the too small)."""
    return Selection(statuses=(ReviewStatus.UNREVIEWED,), min_area=options.smallest_area)


@dataclass
class RefineRun:
    """One refiner job and the states its frames produced (cumulative: a step moves some instances)."""

    job: RefineJob
    image_id: int
    snapshots: list[dict[int, InstanceFrame]] = field(default_factory=list)
    steps: list[RefineStep] = field(default_factory=list)
    running: bool = True
    stopped: bool = False
    """Stopped by the user (Esc): what came from the refine thread after that is ignored."""

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


class RefineController(QObject):
    """Runs refinements for the window and keeps their steps for the scrubber."""

    state_changed = Signal()
    step_shown = Signal(int, int, str)      # shown step (1-based), steps so far, description
    queue_progress = Signal(int, int)       # instances done, total
    queue_measured = Signal(object, float)  # RefineOptions, seconds per instance of a finished queue
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
        self.stats: QueueStats | None = None
        """The queue run in progress, or the last one."""
        self.queue_paused = False
        self._queue: deque[QueueItem] = deque()
        self._queue_options: RefineOptions | None = None
        self._queue_runs = itertools.count(1)
        self._queue_token = 0
        self._missing_files: set[int] = set()
        self._pending_writes = 0
        """Results of this queue run handed to the writer whose "written" has not come back yet."""
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
        """From the start of a queue run until its last result is saved (paused included)."""
        return self._queue_options is not None

    @property
    def queue_total(self) -> int:
        return 0 if self.stats is None else self.stats.total

    @property
    def queue_done(self) -> int:
        return 0 if self.stats is None else self.stats.done

    @property
    def step_count(self) -> int:
        return 0 if self.session is None else len(self.session.snapshots)

    def _job(self, options: RefineOptions, image: np.ndarray | Path, masks: list[MaskInput], ids: list[int],
             doc: ImageDocument | None, keep_steps: bool, min_frame_s: float = 0.0,
             **guidance: np.ndarray | None) -> RefineJob:
        """A job; on the open document ``doc`` its instances' versions and the selection go with it."""
        return RefineJob(
            self.service.next_job_id(), options, image, masks, ids, min_frame_s=min_frame_s,
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
        reason = never_refined(layer.locked, layer.crowd, 1 if layer.mask.any() else 0)
        if reason is not None:
            self.message.emit(REFUSALS[reason].format(id=layer.id))
            return False
        self.discard()
        job = self._job(options, doc.image, [doc.snapshot(layer.id)], [layer.id], doc, True, self.min_frame_s,
                        **doc.guidance_snapshot())
        self.session = RefineRun(job, doc.image_id)
        self.session_doc = doc
        self.shown = -1
        self.service.submit(job)
        guided = any(mask is not None for mask in (job.region, job.foreground, job.background))
        self.message.emit(f"Refining instance {layer.id} ({options.mode}, {plural(options.steps, 'step')})…"
                          + (" with this image's guidance strokes (Edit › Clear Guidance removes them)" if guided else ""))
        self.state_changed.emit()
        return True

    def stop(self) -> None:
        """Stop the interactive run now (the refine thread ends it after its current step), or cancel the queue."""
        run = self.session
        if run is not None and run.running:
            self.service.stop()
            run.running, run.stopped = False, True
            self._run_ended(run)
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

    def _run_ended(self, run: RefineRun) -> None:
        """The interactive run is over (finished, or stopped by the user): say what there is to review."""
        if not run.snapshots:
            self._end_session()
            self.message.emit("Refinement stopped before its first step; the instance is unchanged")
            return
        if run.snapshots[-1][run.job.instance_ids[0]].patch.skipped:
            self._end_session()
            self.message.emit(f"This instance is too small for the refiner (under {run.job.options.smallest_area} "
                              f"pixels in {run.job.options.mode} mode); nothing changed")
            return
        verb = "stopped after" if run.stopped else "finished:"
        self.message.emit(f"Refinement {verb} {plural(len(run.snapshots), 'step')}; Accept (Shift+Enter) or Reject "
                          "(Backspace); the scrubber shows every step")
        self.state_changed.emit()

    # ------------------------------------------------------------------------------- queue
    def plan(self, selection: Selection) -> RefinePlan | None:
        """What ``selection`` would refine now (the store first gets every edit made so far)."""
        store = self.project.store
        if store is None:
            return None
        self.project.flush()  # the store must hold every edit (lock, hide, strokes) the selection reads
        return plan_refinement(store, selection)

    def refine_image(self, options: RefineOptions) -> bool:
        """Every instance of the open image the selection rules allow, whatever its status."""
        doc = self.project.doc
        plan = None if doc is None else self.plan(Selection(statuses=None, image_id=doc.image_id, redo=True,
                                                            min_area=options.smallest_area))
        return plan is not None and self.start_queue(options, plan, "this image")

    def refine_dataset(self, options: RefineOptions) -> bool:
        """Every unreviewed instance of the project not refined yet: what ``refine`` does headless (the window
        asks first, with ``plan(unreviewed(options))``'s figures)."""
        plan = self.plan(unreviewed(options))
        return plan is not None and self.start_queue(options, plan, "the project")

    def start_queue(self, options: RefineOptions, plan: RefinePlan, what: str) -> bool:
        """Refine ``plan`` one instance after another; ``what`` names the set in messages ("this image")."""
        if self.queue_active:
            self.message.emit("The refine queue is already running")
            return False
        if not plan.total:
            skipped = skipped_text(plan.skipped)
            self.message.emit(f"Nothing to refine in {what}" + (f" (skipped {skipped})" if skipped else ""))
            return False
        self.discard()
        self._queue = deque(QueueItem(image_id, i) for image_id, ids in plan.by_image.items() for i in ids)
        self._queue_options = options
        self._queue_token = next(self._queue_runs)
        self._pending_writes = 0
        self._missing_files.clear()
        self.stats = QueueStats(what, plan.total, options.smallest_area, plan.skipped.copy())
        self.stats.run()
        self.queue_paused = False
        self.message.emit(f"Refining {plural(plan.total, 'instance')} of {what}…")
        self.queue_progress.emit(0, plan.total)
        self._next_job()
        self.state_changed.emit()
        return True

    def set_paused(self, paused: bool) -> None:
        """Pause after the instance in flight, or resume."""
        if not self.queue_active or self.stats is None:
            self.queue_paused = False
            self.state_changed.emit()
            return
        self.queue_paused = paused
        if paused and self.queue_run is None:
            self.stats.hold()
        if not paused:
            self.stats.run()
            if self.queue_run is None:
                self._next_job()
        self.state_changed.emit()
        self.queue_progress.emit(self.stats.done, self.stats.total)

    def cancel_queue(self) -> None:
        if not self.queue_active:
            return
        self._queue.clear()
        if self.queue_run is not None:
            self.service.stop()
            self._clear_queue_preview()
            self.queue_run = None
        self._flush_writes()
        self._finish_queue(cancelled=True)

    def _next_job(self) -> None:
        options, stats = self._queue_options, self.stats
        if options is None or stats is None:  # the run is over (cancelled, or its last write came back)
            return
        while self._queue and not self.queue_paused:
            item = self._queue.popleft()
            job = self._queue_job(item, options)
            if job is None:
                self.queue_progress.emit(stats.done, stats.total)
                continue
            self.queue_run = RefineRun(job, item.image_id)
            self.service.submit(job)
            return
        if self.queue_paused:
            stats.hold()
        elif not self._writing:
            self._finish_queue()

    def _queue_job(self, item: QueueItem, options: RefineOptions) -> RefineJob | None:
        """The job of one instance: image and mask from the open document, else the file and the store; None
        (and the reason counted) when the instance has become unfit since the plan."""
        doc, store, stats = self.project.doc, self.project.store, self.stats
        assert stats is not None
        instance_id = item.instance_id
        if doc is not None and doc.image_id == item.image_id:
            if not doc.has_layer(instance_id):
                stats.left_out(GONE)
                return None
            layer, crop = doc.layer(instance_id), doc.snapshot(instance_id)
            reason = never_refined(layer.locked, layer.crowd, 0 if crop.pixels is None or not crop.pixels.any() else 1)
            if reason is not None:
                stats.left_out(reason)
                return None
            return self._job(options, doc.image, [crop], [instance_id], doc, False)
        if store is None or item.image_id in self._missing_files:
            stats.left_out(MISSING_FILE)
            return None
        try:
            stored = store.instance(instance_id)
        except ProjectError:
            stats.left_out(GONE)
            return None
        reason = never_refined(stored.locked, bool(stored.iscrowd), 1)
        if reason is not None:
            stats.left_out(reason)
            return None
        try:
            path = image_file(store, store.image(item.image_id))
        except DatasetError as error:
            self._missing_files.add(item.image_id)
            self.message.emit(f"Skipped image {error}")
            stats.left_out(MISSING_FILE)
            return None
        return self._job(options, path, [stored.rle], [instance_id], None, False)

    def _finish_queue(self, cancelled: bool = False) -> None:
        stats, options = self.stats, self._queue_options
        self._queue_options = None
        self.queue_paused = False
        if stats is not None:
            stats.hold()
            self.message.emit(stats.report(cancelled))
            measured = stats.seconds_per_instance()
            if measured is not None and options is not None and stats.refined:
                self.queue_measured.emit(options, measured)
            self.queue_progress.emit(stats.total, stats.total)
        self.state_changed.emit()

    def _apply_queue_run(self, run: RefineRun) -> str:
        """Apply a finished job's result; what became of its instance ("refined", ``TOO_SMALL``, or why it
        was left out). On the open image: an undoable step that merges with the run's previous one there.
        Elsewhere: written by the writer thread (the mask was encoded on the refine thread)."""
        instance_id = run.job.instance_ids[0]
        state = run.latest.get(instance_id)
        if state is None or state.patch.skipped:
            return TOO_SMALL
        doc = self.project.doc
        if doc is None or doc.image_id != run.image_id:
            coarse = run.coarse(instance_id)
            token = self._queue_token
            self._pending_writes += 1
            self.project.save_refinement(
                run.image_id, instance_id,
                lambda: state.rle if state.rle is not None else encoded(state.patch, whole_mask(coarse)),
                state.provenance, lambda: self._written(token))
            return REFINED
        doc.clear_preview()
        if not doc.has_layer(instance_id):
            return GONE
        if doc.layer(instance_id).locked:
            return LOCKED
        doc.apply_updates([state.as_update()], "refine", merge_key=(self._queue_token, run.image_id))
        return REFINED

    @property
    def _writing(self) -> bool:
        return self._pending_writes > 0

    def _written(self, token: int) -> None:
        """A result of queue run ``token`` is in the store (counted by these callbacks, not by the writer's
        futures, which may not be marked done yet when the callback arrives): the run ends after its last."""
        if token != self._queue_token:
            return
        self._pending_writes = max(0, self._pending_writes - 1)
        if not self._writing and not self._queue and self.queue_run is None and self.queue_active:
            self._next_job()

    def _flush_writes(self) -> None:
        """Wait for the results handed to the writer (the queue is being cancelled: finished work is kept)."""
        self.project.writer.finish()
        self._pending_writes = 0

    def _clear_queue_preview(self) -> None:
        doc = self.project.doc
        if doc is not None and self.queue_run is not None and doc.image_id == self.queue_run.image_id:
            doc.clear_preview()

    # ------------------------------------------------------------------------------- worker signals
    def _on_frame(self, frame: RefineFrame) -> None:
        run = self.session
        if run is not None and run.job.job_id == frame.job_id:
            if not run.running:  # stopped: the step the annotator saw last is the last one
                return
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
            if run.running:
                run.running, run.stopped = False, stopped
                self._run_ended(run)
            return
        run = self.queue_run
        if run is not None and run.job.job_id == job_id and self.stats is not None:
            self.queue_run = None
            if not stopped:
                outcome = self._apply_queue_run(run)
                if outcome in (REFINED, TOO_SMALL):
                    self.stats.finished(outcome == REFINED)
                else:
                    self.stats.left_out(outcome)
                self.queue_progress.emit(self.stats.done, self.stats.total)
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
            self._finish_queue(cancelled=True)
            self.error.emit("Refinement failed", f"{message}\nThe queue was stopped; finished instances are kept.")

    def _document_changed(self, doc: ImageDocument | None) -> None:
        if self.session is not None and self.session_doc is not doc:
            self.discard()

    def _preview(self, doc: ImageDocument, state: InstanceFrame) -> None:
        doc.set_preview(state.as_preview())


REFINED = "refined"
REFUSALS = {
    LOCKED: "Instance {id} is locked: unlock it (Ctrl+L) to refine it",
    CROWD: "Instance {id} is a crowd region (many objects in one mask): crowd regions are never refined",
    EMPTY: "Instance {id} is empty: paint a coarse mask first",
}
"""What "Refine Selected" says for each rule of ``never_refined``."""
