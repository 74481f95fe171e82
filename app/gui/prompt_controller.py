"""The box and click tools in the window: check what the user pointed at, hand it to the prompt thread, and
turn what comes back into undoable edits.

- **Box**: the rectangle is checked here (``check_box``: empty, degenerate or outside the image gets one status
  message and nothing runs); the prompt thread makes and refines the mask, each refiner step shown over the
  image as it comes; the final mask stays shown while a small popup asks the new instance's category (the
  last one offered first). OK saves it through the service (``save_prompted``, on the store writer's thread,
  with a PROMPTED provenance and the box) and adds it to the document as one undo step; Cancel drops it.
- **Clicks** on the selected instance change it one undo step per click; the clicks so far on it are the seeds
  of the next one, until its mask changes some other way (an undo, a brush stroke) or another instance is
  selected. With nothing selected, a first (left) click makes a new instance as a box does.

Only one prompt runs at a time; a box or click while one runs is refused with a message.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from PySide6.QtCore import QObject, QRect
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QWidget

from app.core.errors import DatasetError
from app.core.mask_ops import Rect
from app.core.records import Category, ReviewStatus
from app.core.store.project import ProjectStore
from app.core.store.rows import StoredInstance
from app.gui import popups
from app.gui.controller import ProjectController
from app.gui.editor.canvas import Canvas
from app.gui.editor.layers import InstanceLayer, palette_color
from app.gui.prompt_worker import PromptJob, PromptOutcome, PromptService
from app.gui.settings import AppSettings
from app.refiner.options import RefineOptions, steps_range
from app.refiner.prompts import Click, PromptError, check_box, check_click
from app.services.prompt import PromptSettings, save_prompted

log = logging.getLogger(__name__)

Message = Callable[..., None]
"""The window's status message: (text, timeout in ms = its default)."""
ErrorBox = Callable[[str, str], None]


def refine_options(settings: AppSettings) -> RefineOptions:
    """The refiner run on prompts and proposals: the window's weights, device, steps and seed, instance mode."""
    low, high = steps_range("instance")
    return RefineOptions(weights=settings.weights, device=settings.device, steps=min(high, max(low, settings.steps)),
                         seed=settings.seed, snap=settings.snap)


def prompt_settings(settings: AppSettings) -> PromptSettings:
    """The prompt tools' settings: the chosen coarse source, then the window's refiner."""
    source = settings.prompt_source
    checkpoint = settings.sam_checkpoint.strip()
    if source == "sam" and not checkpoint:
        raise PromptError("the box and click tools are set to use SAM, but no SAM checkpoint file is chosen: "
                          "choose one in Settings → Prompts, or another source")
    return PromptSettings(source, Path(checkpoint) if source == "sam" else None, prompt_heads(settings),
                          refine_options(settings))


def prompt_heads(settings: AppSettings) -> tuple[Path, ...]:
    """The prompt-head files the user chose (Settings → Prompts); empty: the shipped pair."""
    return tuple(Path(h) for h in settings.prompt_heads)


@dataclass
class _ClickState:
    """The clicks so far on one instance, valid while its mask is at ``version``."""

    image_id: int | None = None
    instance_id: int | None = None
    version: int = -1
    clicks: tuple[Click, ...] = ()


class PromptController(QObject):
    """Box and click prompts of one window, on ``service``'s thread."""

    def __init__(self, project: ProjectController, canvas: Canvas, settings: AppSettings, service: PromptService,
                 window: QWidget, show_message: Message, show_error: ErrorBox) -> None:
        super().__init__(window)
        self.project = project
        self.canvas = canvas
        self.settings = settings
        self.service = service
        self.window = window
        self.show_message = show_message
        self.show_error = show_error
        self.running: int | None = None
        self._clicks = _ClickState()
        canvas.box_drawn.connect(self.box)
        canvas.prompt_clicked.connect(self.click)
        service.worker.step.connect(self._step)
        service.worker.done.connect(self._finished)
        service.worker.failed.connect(self._failed)

    # ----- requests
    def box(self, x0: float, y0: float, x1: float, y1: float) -> bool:
        """Make an instance from a box (image pixels); False, with a message, when it cannot start."""
        doc = self.project.doc
        if doc is None or not self._may_start():
            self.canvas.show_lasso(None)
            return False
        try:
            cx0, cy0, cx1, cy1 = check_box((x0, y0, x1, y1), doc.shape)
            job = PromptJob(self.service.next_job_id(), doc.image_id, doc.image, prompt_settings(self.settings),
                            box=(float(cx0), float(cy0), float(cx1), float(cy1)))
        except PromptError as error:
            self.canvas.show_lasso(None)
            self.show_message(f"Box prompt: {error}")
            return False
        self._submit(job, "Making a mask from the box…")
        return True

    def click(self, x: float, y: float, positive: bool) -> bool:
        """One click on the selected instance (or, with none selected, on a new one)."""
        doc = self.project.doc
        if doc is None or not self._may_start():
            return False
        point = Click(x, y, positive)
        target = doc.selected_id
        try:
            check_click(point, doc.shape)
            if target is None and not positive:
                raise PromptError("nothing is selected: start a new instance with a left click on the object")
            if target is not None and not doc.editable(target):
                raise PromptError(f"instance {target} is locked")
            settings = prompt_settings(self.settings)
        except PromptError as error:
            self.show_message(f"Click prompt: {error}")
            return False
        state = self._clicks
        version = doc.mask_version(target) if target is not None else -1
        if (state.image_id, state.instance_id, state.version) != (doc.image_id, target, version):
            state = _ClickState(doc.image_id, target, version)
        self._clicks = state
        job = PromptJob(self.service.next_job_id(), doc.image_id, doc.image, settings, clicks=(*state.clicks, point),
                        instance_id=target, current=None if target is None else doc.snapshot(target),
                        base_version=version)
        self._submit(job, f"{'Adding' if positive else 'Removing'} around the click…")
        return True

    # ----- results
    def _may_start(self) -> bool:
        if self.running is not None:
            self.show_message("The last prompt is still being worked on: wait for it")
            return False
        if self.project.store is None or self.project.store.read_only:
            self.show_message("This window is read-only: the prompt tools change nothing")
            return False
        return True

    def _submit(self, job: PromptJob, text: str) -> None:
        self.running = job.job_id
        self.show_message(text, 0)
        self.service.submit(job)

    def _failed(self, job_id: int, message: str) -> None:
        if job_id != self.running:
            return
        self.running = None
        self.canvas.show_lasso(None)
        self.canvas.show_prompt_preview(None)
        self.show_error("Prompt failed", message)

    def _step(self, job_id: int, rect: Rect, preview: QImage, text: str) -> None:
        doc = self.project.doc
        if job_id == self.running and doc is not None:
            self.canvas.show_prompt_preview(preview, rect)
            self.show_message(f"Box prompt: {text}…", 0)

    def _finished(self, outcome: PromptOutcome) -> None:
        job = outcome.job
        if job.job_id != self.running:
            return
        self.running = None
        self.canvas.show_lasso(None)
        self.canvas.show_prompt_preview(None)
        doc = self.project.doc
        if doc is None or doc.image_id != job.image_id:
            self.show_message("The image changed before the prompt finished: nothing was added")
            return
        if job.instance_id is not None:
            self._apply_click(outcome)
        elif outcome.pixels is None:
            self.show_message("The prompt found no object there: nothing was added")
        else:
            self._offer(outcome)

    def _apply_click(self, outcome: PromptOutcome) -> None:
        doc, job = self.project.doc, outcome.job
        assert doc is not None and job.instance_id is not None
        if not doc.has_layer(job.instance_id) or doc.mask_version(job.instance_id) != job.base_version:
            self._clicks = _ClickState()
            self.show_message("The instance changed while the click was worked on: click again")
            return
        if outcome.update is not None:
            doc.apply_updates([outcome.update], "click")
        self._clicks = _ClickState(job.image_id, job.instance_id, doc.mask_version(job.instance_id), job.clicks)
        if outcome.rect is None:  # no undo step was made: Ctrl+Z would undo the edit before the click
            self.show_message(f"Click {len(job.clicks)}: changed nothing (the click stays as a seed for the next)")
        else:
            self.show_message(f"Click {len(job.clicks)}: instance #{job.instance_id} is now {outcome.area} px "
                              "(Ctrl+Z undoes this click)")

    def _offer(self, outcome: PromptOutcome) -> None:
        """Show the new mask and ask its category; OK saves it."""
        self.canvas.show_prompt_preview(outcome.preview, outcome.rect)
        self.show_message(f"{'Box' if outcome.job.box else 'Click'} prompt: the new mask ({outcome.area} px); "
                          "choose its category, or Cancel to drop it", 0)
        try:
            category = self.ask_category(self.canvas.global_rect(outcome.rect) if outcome.rect is not None else None)
        finally:
            self.canvas.show_prompt_preview(None)
        if category is None:
            self.show_message("Prompt discarded")
            return
        self.settings.prompt_category = self.project.categories[category].name
        self._create(outcome, category)

    def ask_category(self, beside: QRect | None = None) -> int | None:
        """The small popup, placed ``beside`` the new mask (global coordinates): the project's categories, the
        last one chosen for a prompt first, else the selected instance's."""
        categories = list(self.project.categories.values())
        chosen = popups.pick_category(self.window, categories, self._offered_category(categories), beside)
        return None if chosen is None else chosen.id

    def _offered_category(self, categories: list[Category]) -> int | None:
        """The category the popup starts on: the one of the name last given to a prompt when this project has it,
        else the selected instance's (the first prompt on a project no longer offers its first category)."""
        last = self.settings.prompt_category
        named = next((c.id for c in categories if c.name == last), None)
        if named is not None:
            return named
        doc = self.project.doc
        if doc is not None and doc.selected_id is not None and doc.has_layer(doc.selected_id):
            return doc.layer(doc.selected_id).category_id
        return None

    def _create(self, outcome: PromptOutcome, category: int) -> None:
        """Save through the service on the writer's thread, then add it to the document (one undo step)."""
        job, autosave = outcome.job, self.project.autosave

        def write(store: ProjectStore) -> StoredInstance:
            instance_id = save_prompted(store, job.image_id, category, outcome.full(), outcome.provenance,
                                        box=job.box)
            stored = store.instance(instance_id)
            autosave.record_counts(stored)
            return stored

        self.project.writer.submit(write, lambda stored: self._created(stored, outcome),
                                   lambda error: self._save_failed(error))

    def _save_failed(self, error: DatasetError) -> None:
        self.show_error("Could not save the new instance", str(error))

    def _created(self, stored: StoredInstance, outcome: PromptOutcome) -> None:
        doc = self.project.doc
        self.project.saved.emit(stored.id)
        if doc is None or doc.image_id != stored.image_id:
            self.show_message(f"New instance #{stored.id} saved on image {stored.image_id}")
            return
        self.project.autosave.adopt(stored)
        layer = InstanceLayer(stored.id, stored.category_id, outcome.full(), palette_color(stored.id), z=stored.z_order,
                              status=ReviewStatus(stored.status).value, provenance=stored.provenance)
        doc.adopt_instance(layer, outcome.rect)
        doc.select(stored.id)
        if outcome.job.clicks:
            self._clicks = _ClickState(doc.image_id, stored.id, doc.mask_version(stored.id), outcome.job.clicks)
        category = self.project.categories.get(stored.category_id)
        name = category.name if category is not None else str(stored.category_id)
        log.info("instance %s made by the %s prompt (%s, %d px)", stored.id, "box" if outcome.job.box else "click",
                 outcome.provenance.mode, outcome.area)
        self.show_message(f"New instance #{stored.id} ({name}, {outcome.area} px): Ctrl+Z removes it")
