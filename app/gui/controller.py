"""The open project: opening and importing, loading images into documents, navigation, review.

Every committed edit of the open image is saved by ``Autosave`` (autosave.py), so closing or
killing the app loses at most the stroke in progress.

Slow work (reading an image, decoding its masks into the row-major arrays the editor uses, building the
photo's display pyramid; importing a dataset) runs on the thread pool with progress. The store serves the
GUI thread's queries, which are fast; writes (a committed, fsynced transaction each) go through
``writer``, a thread of their own (app/gui/store_writer.py).
"""
from __future__ import annotations

import itertools
import logging
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PySide6.QtCore import QObject, QStandardPaths, QTimer, Signal
from PySide6.QtGui import QImage

from app.core.errors import DatasetError
from app.core.gc_pause import freeze_survivors
from app.core.images import read_image_rgb
from app.core.mask_ops import Rect
from app.core.records import Category, ImageRecord, MaskError, Provenance, ReviewStatus, category_labels, rle_boxes
from app.core.store.errors import ProjectError
from app.core.store.project import MaskLike, ProjectStore
from app.core.store.query import InstanceFilter
from app.core.store.rows import StoredInstance
from app.core.wording import plural
from app.gui.autosave import Autosave
from app.gui.editor.document import ImageDocument
from app.gui.editor.layers import InstanceLayer, palette_color
from app.gui.editor.overlays import build_pyramid
from app.gui.store_writer import StoreWriter
from app.gui.settings import AppSettings
from app.gui.tasks import TaskRunner
from app.gui.undo_history import UndoHistory
from app.services.datasets import ImportRequest, ImportResult, import_project
from app.services.demo import open_demo_project
from app.services.refine import save_refinement
from app.services.selection import image_file

log = logging.getLogger(__name__)

PLACEHOLDER_GREY = 96
SESSION_DELAY_MS = 500


@dataclass(frozen=True)
class LoadedImage:
    """What the image loader hands back to the GUI thread."""

    token: int
    record: ImageRecord
    image: np.ndarray
    instances: list[StoredInstance]
    masks: list[np.ndarray]
    bboxes: dict[int, Rect | None]
    problem: str | None
    levels: list[QImage]
    damaged: dict[int, str]
    """The instances left out because their masks cannot be decoded (a damaged project): id -> the problem."""


def rle_bbox(rle: dict[str, Any]) -> Rect | None:
    """The tight box of an RLE mask (from its runs, without decoding it), None when empty."""
    x, y, w, h = (int(round(v)) for v in rle_boxes([rle])[0])
    return None if w == 0 or h == 0 else (x, y, x + w, y + h)


def damaged_instance_message(instance_id: int) -> str:
    return f"Instance {instance_id} has a damaged mask: it is not shown and cannot be edited"


def default_data_dir() -> Path:
    """The user's application data folder (QStandardPaths.AppDataLocation), where the demo project lives."""
    return Path(QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation))


class ProjectController(QObject):
    """Owns the open ``ProjectStore`` and the open image's ``ImageDocument``."""

    project_changed = Signal()
    document_changed = Signal(object)   # ImageDocument | None
    image_loading = Signal("qint64")    # image id being loaded
    saved = Signal("qint64")            # an instance's row in the store changed
    message = Signal(str)
    error = Signal(str, str)            # title, message
    progress = Signal(str, int, int)    # what, done, total (total 0: busy; done == total: finished)

    def __init__(self, settings: AppSettings, tasks: TaskRunner, data_dir: Path | None = None,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        self.tasks = tasks
        self.data_dir = data_dir
        self.store: ProjectStore | None = None
        self.doc: ImageDocument | None = None
        self.images: list[ImageRecord] = []
        self.categories: dict[int, Category] = {}
        self.session: dict[str, Any] = {}
        self.writer = StoreWriter(self)
        self.undo = UndoHistory(self)
        self.autosave = Autosave(self.writer, self)
        self.autosave.saved.connect(self.saved)
        self.autosave.failed.connect(lambda message: self.error.emit("Could not save the edit", message))
        self._tokens = itertools.count(1)
        self._loading = 0
        self.damaged_ids: set[int] = set()
        """The open image's instances left out because their masks cannot be decoded."""
        self._damage_reported: set[int] = set()
        """Images of the open project whose damaged instances a dialog has already listed."""
        self._pending_session: dict[str, Any] = {}
        self._session_timer = QTimer(self)
        self._session_timer.setSingleShot(True)
        self._session_timer.setInterval(SESSION_DELAY_MS)
        self._session_timer.timeout.connect(self._write_session)
        self.import_task: Any = None

    # ------------------------------------------------------------------------------- opening
    @property
    def project_path(self) -> Path | None:
        return None if self.store is None else self.store.path

    def open_project(self, path: str | Path) -> bool:
        """Open a project file and resume where the annotator left off; False (and an error) if it fails."""
        path = Path(path)
        if self.store is not None and path.resolve() == Path(self.store.path).resolve():
            self.message.emit(f"{path.name} is the project open here")  # opening it again would meet our own lock
            return True
        try:
            store = ProjectStore.open(path)
        except DatasetError as e:
            if not path.exists():
                self.settings.remove_recent_project(path)
            self.error.emit("Cannot open the project", str(e))
            return False
        return self._install(store)

    def open_demo(self) -> bool:
        try:
            store = open_demo_project(self.data_dir or default_data_dir())
        except (DatasetError, OSError) as e:
            self.error.emit("Cannot open the demo project", str(e))
            return False
        return self._install(store)

    def import_dataset(
        self, source: Path, fmt: str | None = None, images_dir: Path | None = None,
        images_file: Path | None = None, *, project: Path,
    ) -> None:
        """Create the project ``project`` from a dataset on the thread pool, then open it (an existing one is
        opened). ``fmt`` names a row of app/services/formats.IMPORT_FORMATS or is None to detect it. The
        window asks the user where ``project`` goes (app/gui/import_dialogs.py), never beside the source."""
        if project.exists():
            self.message.emit(f"{project.name} already exists: opening it")
            self.open_project(project)
            return
        request = ImportRequest(source, fmt, images_dir, images_file)

        def run(progress: Callable[[int, int], None]) -> ImportResult:
            progress(0, 0)
            return import_project(request, project, progress=progress)

        self.progress.emit(f"Importing {source.name}", 0, 0)
        self.import_task = self.tasks.start(
            run, f"import of {source.name}", self._imported, self._import_failed,
            lambda done, total: self.progress.emit(f"Importing {source.name}", done, total),
        )

    def cancel_import(self) -> None:
        if self.import_task is not None:
            self.import_task.cancel()

    def _imported(self, result: ImportResult) -> None:
        self.import_task = None
        self.progress.emit("Import", 1, 1)
        if result.report.problems:
            self.error.emit("Imported with problems", result.report.summary(max_problems=15))
        self.open_project(result.project)

    def _import_failed(self, message: str) -> None:
        self.import_task = None
        self.progress.emit("Import", 1, 1)
        self.error.emit("Import failed", message)

    def set_images_dir(self, folder: Path) -> None:
        """Point the project at the folder its images are in, and reload the open image."""
        if self.store is None:
            return
        try:
            self.store.set_images_dir(folder)
        except ProjectError as e:
            self.error.emit("Cannot change the images folder", str(e))
            return
        if self.doc is not None:
            self.open_image(self.doc.image_id, self.doc.selected_id)

    def _install(self, store: ProjectStore) -> bool:
        """Make ``store`` the open project. Its lists are read first: a damaged one is refused with one message
        and the project open before stays open."""
        try:
            images = store.images()
            categories = {c.id: c for c in store.categories()}
            session = store.session_state()
        except ProjectError as e:
            store.close()
            self.error.emit("Cannot open the project", str(e))
            return False
        self.close_project()
        try:
            self.writer.attach(store)
        except DatasetError as e:
            store.close()
            self.error.emit("Cannot open the project", str(e))
            return False
        self.store = store
        self.images, self.categories, self.session = images, categories, session
        freeze_survivors()
        self.settings.add_recent_project(store.path)
        self.project_changed.emit()
        if store.read_only:
            self.message.emit(f"Opened read-only: {store.read_only_reason}")
        ids = {img.id for img in self.images}
        image_id = self.session.get("image_id")
        if image_id not in ids:
            image_id = self.images[0].id if self.images else None
        if image_id is not None:
            self.open_image(image_id, self.session.get("instance_id"))
        return True

    def close_project(self) -> None:
        if self.store is None:
            return
        self.flush()
        self._set_document(None)
        self.undo.clear()
        self.autosave.attach(None, None, [])
        self.writer.attach(None)
        self.store.close()
        self.store = None
        self.images, self.categories, self.session = [], {}, {}
        self._damage_reported.clear()
        self.project_changed.emit()

    # ------------------------------------------------------------------------------- images
    def open_image(self, image_id: int, select: int | None = None) -> None:
        """Load an image and its masks on the thread pool; ``document_changed`` follows."""
        store = self.store
        if store is None:
            return
        if self.doc is not None:
            self.doc.end_stroke()
        self.autosave.finish()  # the rows read below must hold every edit made so far
        try:
            record = store.image(image_id)
            instances = store.instances_for_image(image_id)
        except ProjectError as e:
            self.error.emit("Cannot load the image", str(e))
            return
        try:
            path: Path | None = image_file(store, record)
            missing = None
        except DatasetError as e:
            path, missing = None, e
        token = self._loading = next(self._tokens)

        def run(progress: Callable[[int, int], None]) -> LoadedImage:
            problem = None
            try:
                if path is None:
                    assert missing is not None
                    raise missing
                image = read_image_rgb(path)
                if image.shape[:2] != (record.height, record.width):
                    raise DatasetError(path, f"is {image.shape[1]}x{image.shape[0]}, the project says "
                                             f"{record.width}x{record.height}")
            except DatasetError as e:
                problem = str(e)
                image = np.full((record.height, record.width, 3), PLACEHOLDER_GREY, np.uint8)
            usable, masks, damaged = [], [], {}
            for inst in instances:
                try:
                    masks.append(inst.mask())
                except MaskError as e:
                    damaged[e.instance_id] = e.problem
                    continue
                usable.append(inst)
            bboxes = {inst.id: rle_bbox(inst.rle) for inst in usable}
            return LoadedImage(token, record, image, usable, masks, bboxes, problem, build_pyramid(image), damaged)

        self.image_loading.emit(image_id)
        self.tasks.start(run, f"loading {record.file_name}",
                         lambda loaded: self._image_loaded(loaded, select), self._image_failed)

    def _image_loaded(self, loaded: LoadedImage, select: int | None) -> None:
        if loaded.token != self._loading or self.store is None:
            return
        layers = [
            InstanceLayer(
                inst.id, inst.category_id, mask, palette_color(inst.id), visible=not inst.hidden, locked=inst.locked,
                z=inst.z_order, status=ReviewStatus(inst.status).value, provenance=inst.provenance,
                crowd=bool(inst.iscrowd),
            )
            for inst, mask in zip(loaded.instances, loaded.masks)
        ]
        doc = ImageDocument(loaded.image, loaded.record.id, layers, self, loaded.bboxes,
                            self.undo.stack_for(loaded.record.id))
        doc.photo_levels = loaded.levels
        doc.category_names = category_labels(list(self.categories.values()))  # twins told apart by id
        self._set_document(doc, loaded.instances)
        if loaded.problem:
            self.error.emit("Image not available", f"{loaded.problem}\nThe masks are shown on a grey background.")
        self._report_damage(loaded)
        if select is not None and doc.has_layer(select):
            doc.select(select)
        elif select in self.damaged_ids:
            self.message.emit(damaged_instance_message(select))
        self._remember(image_id=doc.image_id, instance_id=doc.selected_id)

    def _report_damage(self, loaded: LoadedImage) -> None:
        """List an image's damaged instances in a dialog the first time it opens; later opens say it on the status
        bar, so stepping through the images does not stop at the same dialog each time."""
        self.damaged_ids = set(loaded.damaged)
        if not loaded.damaged:
            return
        image_id = loaded.record.id
        if image_id in self._damage_reported:
            verb = "has a damaged mask and is" if len(loaded.damaged) == 1 else "have damaged masks and are"
            self.message.emit(f"{plural(len(loaded.damaged), 'instance')} of {loaded.record.file_name} {verb} not shown")
            return
        self._damage_reported.add(image_id)
        lines = [f"instance {i}: {problem}" for i, problem in loaded.damaged.items()]
        self.error.emit("Damaged instances", (
            f"{self.store.path}: {plural(len(loaded.damaged), 'instance')} of {loaded.record.file_name}: masks that "
            "cannot be decoded; they are left out of the window and nothing is written to them:\n"
            + "\n".join(lines[:10]) + ("\n…" if len(lines) > 10 else "")))

    def _image_failed(self, message: str) -> None:
        self.error.emit("Cannot load the image", message)

    def _set_document(self, doc: ImageDocument | None, stored: list[StoredInstance] | None = None) -> None:
        old = self.doc
        if old is not None:
            old.end_stroke()
            old.selection_changed.disconnect(self._selection_changed)
            self.undo.closed(old)
            if self.store is not None and self.store.read_only:
                self.undo.forget(old.image_id, "the window is read-only: its edits were not saved")
        self.autosave.attach(self.store, doc, stored or [])
        if old is not None:
            old.deleteLater()
        self.doc = doc
        if doc is not None:
            doc.selection_changed.connect(self._selection_changed)
            self.undo.opened(doc)
        self.document_changed.emit(doc)

    def record(self, image_id: int) -> ImageRecord | None:
        return next((img for img in self.images if img.id == image_id), None)

    # ------------------------------------------------------------------------------- navigation
    def select_instance(self, instance_id: int) -> None:
        """Select an instance, opening its image first when it is on another one."""
        if self.doc is not None and self.doc.has_layer(instance_id):
            self.doc.select(instance_id)
            return
        if self.store is None:
            return
        try:
            image_id = self.store.instance(instance_id).image_id
        except ProjectError as e:
            self.error.emit("No such instance", str(e))
            return
        if instance_id in self.damaged_ids and self.doc is not None and self.doc.image_id == image_id:
            self.message.emit(damaged_instance_message(instance_id))
            return
        self.open_image(image_id, instance_id)

    def cycle_instance(self, delta: int) -> int | None:
        """Select the next (``delta`` 1) or previous (-1) visible instance of the image by id."""
        doc = self.doc
        if doc is None:
            return None
        ids = sorted(layer.id for layer in doc.layers() if layer.visible)
        if not ids:
            return None
        current = doc.selected_id
        if current not in ids:
            target = ids[0] if delta > 0 else ids[-1]
        else:
            target = ids[(ids.index(current) + delta) % len(ids)]
        doc.select(target)
        return target

    def step_image(self, delta: int) -> None:
        if not self.images:
            return
        ids = [img.id for img in self.images]
        current = self.doc.image_id if self.doc is not None else ids[0]
        index = ids.index(current) if current in ids else 0
        self.open_image(ids[(index + delta) % len(ids)])

    def next_unreviewed(self) -> bool:
        """Select the next unreviewed instance: later on this image, else on the next image that has one."""
        try:
            return self._next_unreviewed()
        except ProjectError as e:
            self.error.emit("Cannot find the next unreviewed instance", str(e))
            return False

    def _next_unreviewed(self) -> bool:
        doc, store = self.doc, self.store
        if store is None:
            return False
        unreviewed = ReviewStatus.UNREVIEWED.value
        if doc is not None:
            ids = sorted(layer.id for layer in doc.layers() if layer.visible and layer.status == unreviewed)
            later = [i for i in ids if doc.selected_id is None or i > doc.selected_id]
            if later or (ids and doc.selected_id not in ids):
                doc.select((later or ids)[0])
                return True
        todo = store.counts_by_image([ReviewStatus.UNREVIEWED])
        order = [img.id for img in self.images]
        start = order.index(doc.image_id) + 1 if doc is not None and doc.image_id in order else 0
        for image_id in order[start:] + order[:start]:
            if todo.get(image_id) and (doc is None or image_id != doc.image_id):
                first = store.list_instances(InstanceFilter(
                    image_id=image_id, statuses=[ReviewStatus.UNREVIEWED], include_hidden=False, limit=1))
                if first:
                    self.open_image(image_id, first[0].id)
                    return True
        self.message.emit("No unreviewed instances left")
        return False

    def _selection_changed(self, instance_id: int) -> None:
        self._remember(instance_id=None if instance_id < 0 else instance_id)

    # ------------------------------------------------------------------------------- review
    def set_status(self, status: ReviewStatus) -> None:
        doc = self.doc
        if doc is None or doc.selected_id is None:
            self.message.emit("Select an instance first")
            return
        doc.set_status(doc.selected_id, ReviewStatus(status).value)

    def reject_proposals(self) -> None:
        """Reject the open image's proposals not reviewed yet, as one undo step: what is left once the good ones
        are accepted. They stay, marked, so a later search does not propose them again (docs/decisions/0021)."""
        doc = self.doc
        if doc is None:
            self.message.emit("Open an image first")
            return
        ids = [layer.id for layer in doc.layers() if layer.proposal and layer.status == ReviewStatus.UNREVIEWED.value]
        if not ids:
            self.message.emit("No proposals on this image are waiting for review")
            return
        doc.set_statuses(ids, ReviewStatus.REJECTED.value, f"Reject {plural(len(ids), 'proposal')}")
        self.message.emit(f"Rejected {plural(len(ids), 'proposal')} (Ctrl+Z takes it back)")

    def new_instance(self, category_id: int) -> int | None:
        """Add an empty instance of ``category_id`` on the open image and select it (the window asks which)."""
        doc = self.doc
        if doc is None or self.store is None or category_id not in self.categories:
            return None
        if self.store.read_only:
            self.message.emit(f"The project is read-only ({self.store.read_only_reason}): no new instances")
            return None
        instance_id = doc.add_instance(category_id, np.zeros(doc.shape, dtype=bool))
        doc.select(instance_id)
        return instance_id

    # ------------------------------------------------------------------------------- saving
    def save_refinement(self, image_id: int, instance_id: int, mask: Callable[[], MaskLike], provenance: Provenance,
                        on_done: Callable[[], None] | None = None) -> Future[None]:
        """Save a refinement of an instance of image ``image_id``, which is not open (the refine queue), on the
        writer thread; ``mask()`` gives the mask there (usually encoded already by the refine thread). The
        image's undo history no longer matches its masks, so it is dropped."""
        self.undo.forget(image_id)
        def save(store: ProjectStore) -> None:
            save_refinement(store, instance_id, mask(), provenance)

        def done(_result: None) -> None:
            self.saved.emit(instance_id)
            if on_done is not None:
                on_done()

        def failed(error: DatasetError) -> None:
            self.error.emit("Could not save the refinement", str(error))
            if on_done is not None:
                on_done()

        return self.writer.submit(save, done, failed)

    # ------------------------------------------------------------------------------- session
    def remember_filters(self, filters: dict[str, Any]) -> None:
        self._remember(filters=filters)

    def _remember(self, **values: Any) -> None:
        self.session.update(values)
        self._pending_session.update(values)
        self._session_timer.start()

    def _write_session(self) -> None:
        store, values = self.store, self._pending_session
        self._pending_session = {}
        if store is None or store.read_only or not values:
            return
        self.writer.submit(lambda st: st.save_session_state(values),
                           on_error=lambda e: log.warning("could not save the session state: %s", e))

    def flush(self) -> None:
        """Commit a stroke in progress and the session state now (Ctrl+S; every edit is saved already)."""
        if self.doc is not None:
            self.doc.end_stroke()
        self._session_timer.stop()
        self._write_session()
        self.autosave.finish()
