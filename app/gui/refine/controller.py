"""Refinement in the window: the interactive run of one instance, and the queue for many.

Interactive (the selected instance): every step the refine thread yields is kept and drawn as the
document's preview; when the run finishes or is stopped, the scrubber picks any step, and Accept applies
it as one undo step with its provenance (weights, mode, reverse steps, mean confidence). Nothing touches
the instance until then, so Stop or Reject leave it exactly as it was.

Queue (all instances of the image, or every unreviewed instance of the project): one job per image
(per instance in HR mode, which refines one mask at a time). Each finished job is applied at once: on the
open image as one undoable step, elsewhere straight into the store (on the writer thread) with the same
provenance; statuses stay "unreviewed", so the instance list's "largest change" and "lowest confidence"
sorts lead the review (docs/decisions/0006).

The GUI thread's share of a step is kept small on large photos: everything stays inside the refiner's
crop box, the refine thread draws the preview images of the instance that will be shown and, at the last
step, works out the undo patches (``_prepare``); the GUI thread swaps images and writes pixels.
"""
from __future__ import annotations

import logging
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PySide6.QtCore import QObject, Signal

from app.core.images import find_image_file
from app.core.records import ChangeKind, Provenance, ReviewStatus, decode_mask, encode_mask
from app.core.store.query import InstanceFilter
from app.gui.controller import ProjectController
from app.gui.editor.document import ImageDocument, MaskCrop, MaskUpdate, prepare_update
from app.gui.editor.preview import DiffColors, Preview, prepare_preview
from app.gui.refine.worker import MaskInput, RefineJob, RefineService
from app.refiner.steps import MaskPatch, RefineStep

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RefineChoice:
    """What the refine panel is set to."""

    weights: str
    device: str
    mode: str
    steps: int
    seed: int
    min_frame_s: float = 0.0


def weights_name(value: str) -> str:
    """The name provenance records: a registry name as is, a checkpoint file by its file name."""
    path = Path(value)
    return path.name if path.suffix else value


@dataclass
class InstanceState:
    """One instance at one yielded step."""

    patch: MaskPatch

    @property
    def reverse_steps(self) -> int:
        return self.patch.reverse_steps

    @cached_property
    def mean_confidence(self) -> float:
        return float(self.patch.confidence.mean()) if self.patch.confidence.size else 0.0


@dataclass
class RefineRun:
    """One refiner job and the states its steps produced (cumulative: a step updates some instances)."""

    job: RefineJob
    image_id: int
    choice: RefineChoice
    coarse: dict[int, MaskInput]
    keep_all: bool
    snapshots: list[dict[int, InstanceState]] = field(default_factory=list)
    steps: list[RefineStep] = field(default_factory=list)
    running: bool = True
    stopped: bool = False
    base_versions: dict[int, int] = field(default_factory=dict)
    """Mask versions of the open document's instances when ``coarse`` was copied from them."""
    focus_id: int | None = None
    """The instance the GUI shows (besides each step's first): its previews are drawn ahead."""
    frames: dict[tuple[int, int], Preview] = field(default_factory=dict)
    """Previews drawn on the refine thread, by (step number, instance id), until shown."""
    updates: dict[int, MaskUpdate] = field(default_factory=dict)
    """Final results with their undo patches worked out on the refine thread."""
    encoded: dict[int, tuple[np.ndarray, dict[str, Any]]] = field(default_factory=dict)
    """Final results for the store (an image not open), encoded on the refine thread: (patch mask, RLE)."""

    def take_frame(self, step: RefineStep, instance_id: int) -> Preview | None:
        """The prepared preview of ``instance_id`` at ``step``; older ones are dropped."""
        frame = self.frames.get((step.step, instance_id))
        for key in list(self.frames):
            if key[0] <= step.step:
                self.frames.pop(key, None)
        return frame

    def add(self, step: RefineStep) -> dict[int, InstanceState]:
        current = dict(self.snapshots[-1]) if self.snapshots else {}
        for index, patch in zip(step.indices, step.results):
            current[self.job.instance_ids[index]] = InstanceState(patch)
        if self.keep_all:
            self.snapshots.append(current)
            self.steps.append(step)
        else:
            self.snapshots, self.steps = [current], [step]
        return current

    def full_mask(self, instance_id: int, state: InstanceState, shape: tuple[int, int]) -> np.ndarray:
        coarse = self.coarse[instance_id]
        if isinstance(coarse, MaskCrop):
            base = coarse.full()
        else:
            base = coarse if isinstance(coarse, np.ndarray) else decode_mask(coarse)
        return state.patch.full_mask(shape, base)

    def stored_mask(self, instance_id: int, state: InstanceState, shape: tuple[int, int]) -> tuple[dict[str, Any], Provenance, float]:
        """The refined mask as the store takes it, with its provenance (runs on the writer thread: pasting
        and encoding a full-resolution mask takes tens of milliseconds on large photos); encoded already
        when the refine thread did it."""
        ready = self.encoded.get(instance_id)
        if ready is not None and ready[0] is state.patch.mask:
            rle = ready[1]
        else:
            rle = encode_mask(self.full_mask(instance_id, state, shape))
        prov = Provenance(ChangeKind.REFINED, weights_name(self.choice.weights), self.choice.mode,
                          state.reverse_steps)
        return rle, prov, state.mean_confidence

    def update(self, instance_id: int, state: InstanceState) -> MaskUpdate:
        """Applying ``state``: with the patch the refine thread worked out when it is that step's."""
        prepared = self.updates.get(instance_id)
        if prepared is None or prepared.mask is not state.patch.mask:
            prepared = MaskUpdate(instance_id, state.patch.box, state.patch.mask)
        return replace(prepared, provenance=self.provenance(state))

    def provenance(self, state: InstanceState) -> dict[str, Any]:
        return {
            "kind": ChangeKind.REFINED.value, "weights": weights_name(self.choice.weights),
            "mode": self.choice.mode, "steps": state.reverse_steps, "mean_confidence": state.mean_confidence,
        }


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
        self.session: RefineRun | None = None
        self.session_doc: ImageDocument | None = None
        self.shown = -1
        self.queue_run: RefineRun | None = None
        self._queue: deque[QueueItem] = deque()
        self._queue_choice: RefineChoice | None = None
        self.queue_total = 0
        self.queue_done = 0
        self.queue_paused = False
        self._writes: list[Future[Any]] = []
        worker = service.worker
        worker.step.connect(self._on_step)
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

    # ------------------------------------------------------------------------------- interactive
    def refine_selected(self, choice: RefineChoice) -> bool:
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
        guidance = doc.guidance_snapshot()
        coarse = doc.snapshot(layer.id)
        job = RefineJob(
            self.service.next_job_id(), choice.weights, choice.device, choice.mode, choice.steps, choice.seed,
            doc.image, [coarse], [layer.id], guidance["region"], guidance["foreground"], guidance["background"],
            choice.min_frame_s,
        )
        run = RefineRun(job, doc.image_id, choice, {layer.id: coarse}, keep_all=True,
                        base_versions={layer.id: doc.mask_version(layer.id)}, focus_id=layer.id)
        self.session = self._with_prepare(run)
        self.session_doc = doc
        self.shown = -1
        self.service.submit(run.job)
        self.message.emit(f"Refining instance {layer.id} ({choice.mode}, {choice.steps} steps)…")
        self.state_changed.emit()
        return True

    def stop(self) -> None:
        """Stop the interactive run after its current step, or cancel the queue."""
        if self.running:
            self.service.stop()
        elif self.queue_active:
            self.cancel_queue()

    def show_step(self, index: int, frame: Preview | None = None) -> None:
        """Show the ``index``-th (0-based) kept step of the interactive run as the preview (``frame``: its
        preview as the refine thread drew it)."""
        run, doc = self.session, self.session_doc
        if run is None or doc is None or not run.snapshots:
            return
        index = max(0, min(index, len(run.snapshots) - 1))
        self.shown = index
        instance_id = run.job.instance_ids[0]
        state = run.snapshots[index][instance_id]
        self._preview(doc, instance_id, state, frame)
        step = run.steps[index]
        text = (f"step {index + 1}/{max(step.total, len(run.snapshots))} · {step.stage} · "
                f"{state.patch.changed} px changed · confidence {state.mean_confidence:.2f}")
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
        state = run.snapshots[self.shown if self.shown >= 0 else -1][instance_id]
        self._end_session()
        doc.apply_updates([run.update(instance_id, state)], "refine")
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
    def refine_image(self, choice: RefineChoice) -> bool:
        doc = self.project.doc
        if doc is None:
            return False
        ids = [layer.id for layer in doc.layers() if layer.visible and not layer.locked and layer.mask.any()]
        return self._start_queue(choice, {doc.image_id: ids}, f"image {doc.image_id}")

    def refine_dataset(self, choice: RefineChoice) -> bool:
        store = self.project.store
        if store is None:
            return False
        by_image: dict[int, list[int]] = {}
        query = InstanceFilter(statuses=[ReviewStatus.UNREVIEWED], include_hidden=False, min_area=1)
        for summary in store.list_instances(query):
            if not summary.locked:
                by_image.setdefault(summary.image_id, []).append(summary.id)
        ordered = {img.id: by_image[img.id] for img in self.project.images if img.id in by_image}
        return self._start_queue(choice, ordered, "the unreviewed instances")

    def _start_queue(self, choice: RefineChoice, by_image: dict[int, list[int]], what: str) -> bool:
        if self.queue_active:
            self.message.emit("The refine queue is already running")
            return False
        total = sum(len(ids) for ids in by_image.values())
        if not total:
            self.message.emit(f"Nothing to refine in {what}")
            return False
        self.discard()
        items: list[QueueItem] = []
        for image_id, ids in by_image.items():
            if choice.mode == "hr":
                items += [QueueItem(image_id, (i,)) for i in ids]
            else:
                items.append(QueueItem(image_id, tuple(ids)))
        self._queue = deque(items)
        self._queue_choice = choice
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
        choice = self._queue_choice
        assert choice is not None
        while self._queue and not self.queue_paused:
            item = self._queue.popleft()
            job_inputs = self._inputs(item)
            if job_inputs is None:
                self.queue_done += len(item.instance_ids)
                self.queue_progress.emit(self.queue_done, self.queue_total)
                continue
            image, ids, masks = job_inputs
            job = RefineJob(self.service.next_job_id(), choice.weights, choice.device, choice.mode, choice.steps,
                            choice.seed, image, masks, ids, min_frame_s=choice.min_frame_s)
            run = RefineRun(job, item.image_id, choice, dict(zip(ids, masks)), keep_all=False)
            doc = self.project.doc
            if doc is not None and doc.image_id == item.image_id:
                run.base_versions = {i: doc.mask_version(i) for i in ids}
                run.focus_id = doc.selected_id
            self.queue_run = self._with_prepare(run)
            self.service.submit(run.job)
            return
        if not self._queue and self.queue_run is None and not self._writing:
            self.message.emit(f"Refined {self.queue_done} instances; sort the list by largest change to review")
            self._finish_queue()

    def _inputs(self, item: QueueItem) -> tuple[np.ndarray | Path, list[int], list[MaskInput]] | None:
        """The image and coarse masks of a queue item: from the open document, else from the store."""
        doc, store = self.project.doc, self.project.store
        if doc is not None and doc.image_id == item.image_id:
            ids = [i for i in item.instance_ids if doc.has_layer(i)]
            return (doc.image, ids, [doc.snapshot(i) for i in ids]) if ids else None
        if store is None:
            return None
        record = store.image(item.image_id)
        path = find_image_file(store.images_dir, record) if store.images_dir is not None else None
        if path is None:
            self.message.emit(f"Skipped image {record.file_name}: file not found")
            return None
        wanted = set(item.instance_ids)
        stored = [inst for inst in store.instances_for_image(item.image_id) if inst.id in wanted]
        return (path, [inst.id for inst in stored], [inst.rle for inst in stored]) if stored else None

    def _finish_queue(self) -> None:
        self._queue_choice = None
        self.queue_paused = False
        self.queue_progress.emit(self.queue_total, self.queue_total)
        self.state_changed.emit()

    def _apply_queue_run(self, run: RefineRun) -> None:
        """Results on the open image: one undoable step now, with the patches the refine thread worked out.
        Elsewhere: masks are pasted and encoded on a background thread and written one per event loop turn,
        so saving a batch never holds the window up."""
        final = {i: state for i, state in (run.snapshots[-1] if run.snapshots else {}).items()
                 if not state.patch.skipped}
        doc = self.project.doc
        if doc is None or doc.image_id != run.image_id:
            shape = run.steps[-1].image_size
            self._writes = [f for f in self._writes if not f.done()]
            for instance_id, state in final.items():
                self._writes.append(self.project.store_mask(
                    instance_id, lambda i=instance_id, s=state: run.stored_mask(i, s, shape), self._written))
            return
        doc.clear_preview()
        updates = []
        for instance_id, state in final.items():
            if not doc.has_layer(instance_id):
                continue
            updates.append(run.update(instance_id, state))
        if updates:
            doc.apply_updates(updates, "refine", f"Refine {len(updates)} instances")

    @property
    def _writing(self) -> bool:
        return any(not f.done() for f in self._writes)

    def _written(self) -> None:
        if not self._writing and not self._queue and self.queue_run is None and self._queue_choice is not None:
            self._next_job()

    def _flush_writes(self) -> None:
        """Wait for the results handed to the writer (the queue is being cancelled: finished work is kept)."""
        self.project.writer.finish()

    def _clear_queue_preview(self) -> None:
        doc = self.project.doc
        if doc is not None and self.queue_run is not None and doc.image_id == self.queue_run.image_id:
            doc.clear_preview()

    # ------------------------------------------------------------------------------- worker signals
    def _on_step(self, job_id: int, step: RefineStep) -> None:
        run = self.session
        if run is not None and run.job.job_id == job_id:
            run.add(step)
            frame = run.take_frame(step, run.job.instance_ids[0])
            following = self.shown < 0 or self.shown == len(run.snapshots) - 2
            if following:
                self.show_step(len(run.snapshots) - 1, frame)
            else:
                self.step_shown.emit(self.shown + 1, len(run.snapshots), "")
            return
        run = self.queue_run
        if run is not None and run.job.job_id == job_id:
            current = run.add(step)
            doc = self.project.doc
            if doc is not None and doc.image_id == run.image_id:
                shown = doc.selected_id if doc.selected_id in current else run.job.instance_ids[step.indices[0]]
                run.focus_id = doc.selected_id
                frame = run.take_frame(step, shown)
                showing = doc.preview is not None and doc.preview.mask is current[shown].patch.mask
                if doc.has_layer(shown) and not showing:
                    self._preview(doc, shown, current[shown], frame)

    def _on_finished(self, job_id: int, stopped: bool) -> None:
        run = self.session
        if run is not None and run.job.job_id == job_id:
            run.running, run.stopped = False, stopped
            if not run.snapshots:
                self._end_session()
                self.message.emit("Refinement stopped before its first step; the instance is unchanged")
                return
            last = run.snapshots[-1][run.job.instance_ids[0]]
            if last.patch.skipped:
                self._end_session()
                self.message.emit("This instance is too small for the refiner (under 512 pixels); nothing changed")
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

    def _preview(self, doc: ImageDocument, instance_id: int, state: InstanceState, frame: Preview | None) -> None:
        """Show a state: as the refine thread drew it when it did, else as arrays the canvas draws."""
        if frame is None or frame.mask is not state.patch.mask:
            frame = Preview(instance_id, state.patch.box, state.patch.mask, state.patch.confidence)
        doc.set_preview(frame)

    # ------------------------------------------------------------------------------- refine thread
    def _with_prepare(self, run: RefineRun) -> RefineRun:
        run.job = replace(run.job, prepare=lambda step, masks: self._prepare(run, step, masks))
        return run

    def _prepare(self, run: RefineRun, step: RefineStep, masks: Sequence[np.ndarray]) -> None:
        """On the refine thread, before ``step`` is sent. For the open document's instances (a MaskCrop):
        draw the previews the GUI will show (each step's first instance and the focused one) and, at the
        last step, work out the undo patches. For a queue job on another image: encode the final masks for
        the store from the coarse masks the refiner decoded (``masks``), instead of decoding them again."""
        colors, heat = self.diff_colors, self.want_confidence
        for index, patch in zip(step.indices, step.results):
            instance_id = run.job.instance_ids[index]
            coarse = run.coarse.get(instance_id)
            version = run.base_versions.get(instance_id)
            if patch.skipped:
                continue
            if isinstance(coarse, dict) and step.final and not run.keep_all:
                run.encoded[instance_id] = (patch.mask, encode_mask(patch.full_mask(step.image_size, masks[index])))
            if not isinstance(coarse, MaskCrop) or version is None:
                continue
            before = coarse.region(patch.box)
            if index == step.indices[0] or instance_id == run.focus_id:
                run.frames[(step.step, instance_id)] = prepare_preview(
                    instance_id, patch.box, patch.mask, patch.confidence, before, version, colors, heat)
            if step.final:
                run.updates[instance_id] = prepare_update(instance_id, patch.box, patch.mask, before, version)
